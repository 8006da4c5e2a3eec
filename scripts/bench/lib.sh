# Shell helpers of the benchmark scripts (sourced).

# wait_port PORT: returns once something accepts TCP connections on 127.0.0.1:PORT (10 s at most).
wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
