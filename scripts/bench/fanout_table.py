"""Prints the fan-out benchmark's table from the loadgen reports: mediarouter and nginx-rtmp
serving the same RTMP players (with the ratio), and mediarouter serving WebSocket players.

usage: fanout_table.py MEDIAROUTER_RTMP.json NGINX_RTMP.json MEDIAROUTER_WS.json
"""
import json
import sys


def load(path):
    with open(path) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def players(r, kind):
    return r.get(kind) or {}


def rows(r, kind):
    p = players(r, kind)
    server = r["server"]
    gb = p.get("bytes", 0) / 1e9
    spread = lambda k: p.get(k) or {"min": 0, "median": 0, "max": 0}
    return {
        "players that played": f"{p.get('played', 0)}/{p.get('players', 0)}",
        "errors": p.get("errors", 0),
        "video frames per player (median, min-max)": "{median} ({min}-{max})".format(**spread("video_frames")),
        "audio frames per player (median, min-max)": "{median} ({min}-{max})".format(**spread("audio_frames")),
        "delivered Mbit/s": round(p.get("mbit_per_s", 0), 1),
        "server CPU, % of a core": round(server["cpu_percent"], 1),
        "server CPU s per delivered GB": round(server["cpu_s"] / gb, 3) if gb else None,
        "server memory per player, KB": round(server["rss_per_player_kb"], 1),
        "first frame p50 ms": p.get("first_frame", {}).get("p50_ms"),
        "first frame p90 ms": p.get("first_frame", {}).get("p90_ms"),
        "delay p50 ms": p.get("delay", {}).get("p50_ms"),
        "delay p99 ms": p.get("delay", {}).get("p99_ms"),
        "delay max ms": p.get("delay", {}).get("max_ms"),
    }


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}"
    return ""


def main():
    mr_rtmp, nginx, mr_ws = (load(p) for p in sys.argv[1:4])
    a, b, c = rows(mr_rtmp, "rtmp"), rows(nginx, "rtmp"), rows(mr_ws, "ws")
    for name, r in (("mediarouter-rtmp", mr_rtmp), ("nginx-rtmp", nginx), ("mediarouter-ws", mr_ws)):
        first = (r.get("rtmp") or r.get("ws") or {}).get("first_error")
        if first:
            print(f"{name}: first error: {first}", file=sys.stderr)
    header = ("", "mediarouter RTMP", "nginx-rtmp RTMP", "ratio", "mediarouter WebSocket")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for key in a:
        print(f"| {key} | {a[key]} | {b[key]} | {ratio(a[key], b[key])} | {c[key]} |")


if __name__ == "__main__":
    main()
