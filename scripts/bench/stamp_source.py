#!/usr/bin/env python3
"""Raw gray video frames stamped with the wall clock, written to stdout in real time, for
measuring glass-to-glass delay: each frame carries the time it was made (milliseconds since the
epoch, low 32 bits) as two rows of 32 blocks (bits, then their complement, so a reader can tell
a good read), which the viewer decodes from the picture it displays.

usage: stamp_source.py WIDTH HEIGHT FPS SECONDS | ffmpeg -f rawvideo -pix_fmt gray -s WxH -r FPS -i - ...
"""
import sys
import time

BLOCK = 16  # pixels per bit block side: survives compression and scaling
BITS = 32


def main():
    width, height, fps, seconds = (int(a) for a in sys.argv[1:5])
    if width < BITS * BLOCK // 2 or height < 4 * BLOCK:
        sys.exit(f"frame too small for {BITS} blocks of {BLOCK} px")
    out = sys.stdout.buffer
    per_row = BITS // 2
    start = time.time()
    for n in range(int(fps * seconds)):
        # Pace in real time from the start, so a slow write never drifts the clock.
        delay = start + n / fps - time.time()
        if delay > 0:
            time.sleep(delay)
        stamp = int(time.time() * 1000) & 0xFFFFFFFF
        frame = bytearray([64 + (n * 3) % 64]) * (width * height)  # moving gray: never static
        for bit in range(BITS):
            value = (stamp >> (BITS - 1 - bit)) & 1
            for complement, row in ((0, bit // per_row), (1, 2 + bit // per_row)):
                level = 255 if value ^ complement else 0
                x0, y0 = (bit % per_row) * BLOCK, row * BLOCK
                for y in range(y0, y0 + BLOCK):
                    frame[y * width + x0 : y * width + x0 + BLOCK] = bytes([level]) * BLOCK
        try:
            out.write(frame)
            out.flush()
        except BrokenPipeError:
            return


if __name__ == "__main__":
    main()
