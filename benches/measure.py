#!/usr/bin/env python3
"""Measure an IPA-compatible agent process the same way for every agent:
start -> first 200 on /v1/status, idle RSS, poll.get_hardware_info latency.

    measure.py --name NAME --port PORT --token TOKEN -- CMD ARGS...

Prints one JSON object. Polls with raw sockets every millisecond (a curl per
poll costs ~10 ms, too coarse for a 20 ms goal). Only loopback is used.
"""
import argparse, http.client, json, os, signal, socket, statistics, subprocess, sys, time


def status_ok(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
    except OSError:
        return False
    try:
        s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data.startswith(b"HTTP/1.1 200") and b'"version"' in data
    except OSError:
        return False
    finally:
        s.close()


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--log", default=os.devnull)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.cmd[1:] if a.cmd and a.cmd[0] == "--" else a.cmd
    log = open(a.log, "ab")
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        while not status_ok(a.port):
            if p.poll() is not None:
                sys.exit(f"{a.name} exited with {p.returncode} before serving; see {a.log}")
            if time.monotonic() - t0 > 60:
                sys.exit(f"{a.name} did not serve within 60 s; see {a.log}")
            time.sleep(0.001)
        start = time.monotonic() - t0
        time.sleep(3)
        idle_rss = rss_kib(p.pid)
        lat = []
        body = json.dumps({"name": "poll.get_hardware_info", "params": {}})
        for _ in range(a.calls):
            c = http.client.HTTPConnection("127.0.0.1", a.port, timeout=30)
            t = time.monotonic()
            c.request("POST", f"/v1/commands/?wait=true&agent_token={a.token}", body,
                      {"Content-Type": "application/json"})
            r = c.getresponse()
            r.read()
            lat.append((time.monotonic() - t) * 1000)
            c.close()
            if r.status != 200:
                sys.exit(f"{a.name}: get_hardware_info answered {r.status}")
        print(json.dumps({
            "name": a.name,
            "pid": p.pid,
            "start_to_first_200_s": round(start, 4),
            "idle_rss_kib": idle_rss,
            "get_hardware_info_ms_median": round(statistics.median(lat), 2),
            "get_hardware_info_ms_min": round(min(lat), 2),
            "get_hardware_info_ms_max": round(max(lat), 2),
            "rss_after_calls_kib": rss_kib(p.pid),
        }))
        sys.stdout.flush()
        # keep it running for the throughput test; the caller kills it
        if os.environ.get("MEASURE_KEEP"):
            open(os.environ["MEASURE_KEEP"], "w").write(str(p.pid))
            p.wait()
    finally:
        if p.poll() is None and not os.environ.get("MEASURE_KEEP"):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
