"""Prints the WebRTC fan-out benchmark's table (scripts/bench/webrtc.sh) from the two loadgen
reports: mediarouter and Janus serving the same WebRTC subscribers, with the ratio
mediarouter / Janus (below 1: mediarouter spends less, or waits less).

usage: webrtc_table.py MEDIAROUTER.json JANUS.json [--janus-source-drops N]
                       [--threads MEDIAROUTER JANUS]
"""
import argparse
import json
import sys

FPS = 30  # the benchmark file's frame rate


def load(path):
    with open(path) as f:
        return json.loads(f.read().strip().splitlines()[-1])


def rows(r, kind):
    s = r.get(kind) or {}
    server = r["server"]
    window = r["window_s"]
    spread = lambda k: s.get(k) or {"min": 0, "median": 0, "max": 0}
    video = spread("video_frames")
    expected = round(window * FPS)
    n = s.get("players", 0)
    # Per-subscriber counts are only reported as min/median/max: all got every frame of the
    # window when even the least served one did (a frame either side is the window's edge).
    if n and video["min"] >= expected - 1:
        complete = f"{n}/{n}"
    else:
        complete = f"not all (min {video['min']} of {expected})"
    packets = s.get("packets_per_s", 0) * window
    cpu_s = server["cpu_s"]
    cores = server["cpu_percent"] / 100
    first = s.get("first_frame") or {}
    delay = s.get("delay") or {}
    return {
        "subscribers that got video": f"{s.get('played', 0)}/{n}",
        "subscribers with every frame of the window": complete,
        "errors": s.get("errors", 0),
        "video frames per subscriber (median, min-max)": "{median} ({min}-{max})".format(**video),
        "audio packets per subscriber (median, min-max)": "{median} ({min}-{max})".format(
            **spread("audio_frames")),
        "packets delivered per s": round(s.get("packets_per_s", 0)),
        "payload delivered, Mbit/s": round(s.get("payload_mbit_per_s", 0), 1),
        "server CPU, % of a core": round(server["cpu_percent"], 1),
        "server CPU µs per delivered packet": round(cpu_s * 1e6 / packets, 2) if packets else None,
        "subscribers per core at this bitrate": per_core(s, n, cores, cpu_s, packets, complete),
        "server memory per subscriber, KB": round(server["rss_per_player_kb"], 1),
        "first frame p50 ms": first.get("p50_ms"),
        "first frame p90 ms": first.get("p90_ms"),
        "delay p50 ms": delay.get("p50_ms"),
        "delay p99 ms": delay.get("p99_ms"),
        "delay max ms": delay.get("max_ms"),
        "SRTP profiles": ", ".join(f"{k} {v}" for k, v in (s.get("srtp_profiles") or {}).items()),
        "load generator CPU, % of a core": round((r.get("loadgen") or {}).get("cpu_percent", 0), 1),
    }


def per_core(s, n, cores, cpu_s, packets, complete):
    """Subscribers one core serves: measured when every subscriber got every frame; otherwise
    (the server fell behind) estimated from its CPU per delivered packet and the packets a fully
    served subscriber gets per second (30 frames of the window's packets per frame, 50 Opus)."""
    if not cores:
        return None
    if complete.startswith(f"{n}/"):
        return round(n / cores)
    frames = (s.get("video_frames") or {}).get("median", 0) * n
    if not frames or not packets:
        return None
    per_subscriber = s.get("video_packets", 0) / frames * FPS + 50
    return f"~{round(packets / cpu_s / per_subscriber)} (est., not all served)"


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        return f"{a / b:.2f}"
    return ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mediarouter")
    parser.add_argument("janus")
    parser.add_argument("--janus-source-drops", default=None)
    parser.add_argument("--threads", nargs=2, default=None)
    args = parser.parse_args()
    mr, janus = load(args.mediarouter), load(args.janus)
    a, b = rows(mr, "webrtc"), rows(janus, "janus")
    for name, r, kind in (("mediarouter", mr, "webrtc"), ("janus", janus, "janus")):
        for e in (r.get(kind) or {}).get("error_kinds") or []:
            print(f"{name}: {e['subscribers']} subscribers: {e['error']}", file=sys.stderr)
    header = ("", "mediarouter", "Janus", "ratio")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for key in a:
        print(f"| {key} | {a[key]} | {b[key]} | {ratio(a[key], b[key])} |")
    if args.janus_source_drops is not None:
        print(f"\nRTP datagrams of the source dropped at Janus's sockets: {args.janus_source_drops}")
    if args.threads is not None:
        print("Server threads in the middle of the window (all on core 0): "
              f"mediarouter {args.threads[0]}, Janus {args.threads[1]}")


if __name__ == "__main__":
    main()
