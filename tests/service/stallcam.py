"""A stalling MJPEG-over-HTTP camera for scripts/test-service.sh.

    stallcam.py CLIP PORT STALL_AFTER_S

Serves the clip's frames as multipart JPEG on 127.0.0.1:PORT for STALL_AFTER_S seconds
after it starts, then keeps every connection open without sending a byte: the hung
camera that only the systemd watchdog can get the service out of.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

import cv2


def _frames(clip: str) -> list[bytes]:
    frames = []
    cap = cv2.VideoCapture(clip)
    while True:
        ok, img = cap.read()
        if not ok:
            return frames
        frames.append(cv2.imencode(".jpg", cv2.resize(img, (320, 240)))[1].tobytes())


def main() -> None:
    clip, port, stall_after = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    frames = _frames(clip)
    t_start = time.monotonic()
    print(f"stallcam: {len(frames)} frames, stalls {stall_after:g} s after start", flush=True)

    def serve(conn: socket.socket) -> None:
        try:
            conn.recv(4096)
            conn.sendall(
                b"HTTP/1.0 200 OK\r\n"
                b"Content-Type: multipart/x-mixed-replace; boundary=frame\r\n\r\n"
            )
            i = 0
            while time.monotonic() - t_start < stall_after:
                f = frames[i % len(frames)]
                i += 1
                head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                conn.sendall(head % len(f) + f + b"\r\n")
                time.sleep(1 / 15)
            print("stallcam: stalling a connection", flush=True)
            time.sleep(3600)
        except OSError:
            pass
        finally:
            conn.close()

    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(8)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
