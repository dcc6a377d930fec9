"""MQTT: topics, payload schemas, the durable outbox and Home Assistant discovery."""
