# Shell helpers of the benchmark scripts (sourced).

# wait_port PORT: returns once something accepts TCP connections on 127.0.0.1:PORT (10 s at most).
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# bench_media [KBPS]: prints the path of the benchmarks' source file (30 s 1280x720 30 fps H.264
# main, no B-frames, KBPS kbit/s CBR (default 2000), 2 s GOP + AAC 128 kbit/s stereo), encoding
# it once when missing.
bench_media() {
  local kbps=${1:-2000}
  local media=target/bench-media/720p30-2m.mp4
  [[ $kbps == 2000 ]] || media=target/bench-media/720p30-${kbps}k.mp4
  if [[ ! -s $media ]]; then
    mkdir -p "$(dirname "$media")"
    echo "encoding $media" >&2
    ffmpeg -hide_banner -loglevel error -nostdin -f lavfi -i testsrc2=size=1280x720:rate=30 \
      -f lavfi -i sine=frequency=440:sample_rate=44100 -t 30 \
      -c:v libx264 -profile:v main -preset veryfast -bf 0 -pix_fmt yuv420p \
      -b:v "${kbps}k" -maxrate "${kbps}k" -bufsize "${kbps}k" -g 60 -keyint_min 60 \
      -sc_threshold 0 -c:a aac -b:a 128k -ac 2 -movflags +faststart -y "$media.part.mp4" >&2
    mv "$media.part.mp4" "$media"
  fi
  echo "$media"
}
