#!/usr/bin/env python3
"""Issue 21's fairness benchmark: every attack class on the API at once,
from 8 source addresses (127.0.0.2-127.0.0.9, loopback only, bounded in
connections and time), while a legitimate client on 127.0.0.1 asks
GET /v1/status every 100 ms on a new TLS connection, as a conductor would.

    benches/api-attack.py [--bin PATH] [--duration 30] [--plain]

Reports the legitimate client's latency (p50/p99/max) and refusals before,
during and after the attack, the agent's thread count and RSS, how long
it takes to return to its idle figures, and what each attack class got.
Goal (issue 21): p99 <= 1 s and none refused during the attack.

The agent is the static release binary when built (scripts/build-static),
else target/release (cargo build --release), run standalone with the
vm-virtio fixture root (it reads nothing of this machine) and auto TLS.
"""
import argparse, multiprocessing as mp, os, select, socket, ssl, subprocess, sys, tempfile, threading, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ATTACKERS = [f"127.0.0.{i}" for i in range(2, 10)]
LEGIT = "127.0.0.1"
CLASSES = ["http2", "no-read", "idle-tcp", "idle-tls", "unsent-body", "bad-te",
           "malformed", "slow-head", "slow-handshake"]


def proc_status(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Threads", "VmRSS"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out.get("Threads", 0), out.get("VmRSS", 0) / 1024


def start_agent(binary, tls, work):
    token = "bench-" + os.urandom(12).hex()
    cmdline = os.path.join(work, "cmdline")
    open(cmdline, "w").close()
    args = [binary, "--standalone", "--listen-host", "127.0.0.1", "--listen-port", "0",
            "--agent-token", token, "--cmdline", cmdline,
            "--root", os.path.join(ROOT, "tests/fixtures/vm-virtio")]
    if not tls:
        args.append("--enable-auto-tls=false")
    log_path = os.path.join(work, "agent.log")
    env = {"PATH": os.environ.get("PATH", ""), "TMPDIR": work}
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log_path, "wb"),
                         stdin=subprocess.DEVNULL, env=env)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 20:
        text = open(log_path, errors="replace").read()
        if "API listening on " in text:
            url = text.split("API listening on ", 1)[1].split(";")[0].strip()
            port = int(url.rsplit(":", 1)[1])
            cert = None
            if "TLS certificate: " in text:
                cert = text.split("TLS certificate: ", 1)[1].splitlines()[0].strip()
            return p, port, cert, log_path
        if p.poll() is not None:
            break
        time.sleep(0.02)
    sys.exit(f"the agent did not start; see {log_path}")


def connect(src, port, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", port))
    return s


def insecure_ctx():
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def read_all(s, limit=5.0):
    data, t0 = b"", time.monotonic()
    s.settimeout(limit)
    try:
        while time.monotonic() - t0 < limit:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (OSError, ssl.SSLError):
        pass
    return data


# --- the legitimate client --------------------------------------------------

def legit(port, cert, tls, stop, out):
    ctx = None
    if tls:
        ctx = ssl.create_default_context(cafile=cert)
    while not stop.is_set():
        t0 = time.monotonic()
        ok, why = False, ""
        try:
            s = connect(LEGIT, port, timeout=10)
            if ctx:
                s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
            s.sendall(b"GET /v1/status HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n")
            r = read_all(s, 10)
            s.close()
            ok = r.startswith(b"HTTP/1.1 200") and b"started_at" in r
            why = "" if ok else (r[:40].decode(errors="replace") or "closed without an answer")
        except (OSError, ssl.SSLError) as e:
            why = type(e).__name__
        out.put((time.time(), time.monotonic() - t0, ok, why))
        left = 0.1 - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)


# --- the attackers ----------------------------------------------------------

def attacker(src, port, tls, stop, counts):
    """All attack classes from one source address, one thread each."""
    ctx = insecure_ctx()
    tally = {c: {} for c in CLASSES}
    lock = threading.Lock()

    def note(cls, what):
        with lock:
            tally[cls][what] = tally[cls].get(what, 0) + 1

    def status_of(data):
        if data.startswith(b"HTTP/1.1 "):
            return data[9:12].decode(errors="replace")
        return "closed" if not data else "other"

    def open_conn(cls, do_tls=True, timeout=5.0):
        s = connect(src, port, timeout)
        note(cls, "connections")
        if tls and do_tls:
            s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        return s

    def one_shot(cls, payload):
        # send, read the answer, close; paced
        while not stop.is_set():
            try:
                s = open_conn(cls)
                s.sendall(payload)
                note(cls, status_of(read_all(s)))
                s.close()
            except (OSError, ssl.SSLError) as e:
                note(cls, type(e).__name__)
            time.sleep(0.05)

    def held(cls, n, setup, pace=0.2):
        # keep up to n connections open; reopen those the agent closes
        conns = []
        while not stop.is_set():
            while len(conns) < n and not stop.is_set():
                try:
                    conns.append(setup())
                except (OSError, ssl.SSLError) as e:
                    note(cls, type(e).__name__)
                    break
            alive = []
            for s in conns:
                try:
                    r, _, _ = select.select([s], [], [], 0)
                    if r:
                        data = s.recv(65536)
                        if not data:
                            note(cls, "closed by the agent")
                            s.close()
                            continue
                        note(cls, status_of(data))
                    alive.append(s)
                except (OSError, ssl.SSLError):
                    note(cls, "closed by the agent")
            conns = alive
            time.sleep(pace)
        for s in conns:
            s.close()

    def no_read():
        req = b"GET /v1/ HTTP/1.1\r\nHost: " + b"h" * 15000 + b"\r\n\r\n"
        while not stop.is_set():
            try:
                s = open_conn("no-read")
                s.settimeout(1.0)
                sent = 0
                while not stop.is_set():
                    try:
                        s.sendall(req)
                        sent += 1
                    except (socket.timeout, ssl.SSLWantWriteError):
                        continue
                # never reads
            except (OSError, ssl.SSLError):
                note("no-read", "closed by the agent")
            time.sleep(0.05)

    def slow_head():
        def setup():
            s = open_conn("slow-head")
            s.sendall(b"GET /v1/status HTTP/1.1\r\n")
            return s
        conns = []
        while not stop.is_set():
            while len(conns) < 4:
                try:
                    conns.append(setup())
                except (OSError, ssl.SSLError) as e:
                    note("slow-head", type(e).__name__)
                    break
            alive = []
            for s in conns:
                try:
                    s.sendall(b"X")
                    alive.append(s)
                except (OSError, ssl.SSLError):
                    note("slow-head", "closed by the agent")
            conns = alive
            time.sleep(0.5)

    def slow_handshake():
        def setup():
            s = open_conn("slow-handshake", do_tls=False)
            s.sendall(b"\x16\x03\x01\x40\x00")  # a 16 KiB handshake record, to come
            return s
        conns = []
        while not stop.is_set():
            while len(conns) < 2:
                try:
                    conns.append(setup())
                except OSError as e:
                    note("slow-handshake", type(e).__name__)
                    break
            alive = []
            for s in conns:
                try:
                    s.sendall(b"\x01")
                    alive.append(s)
                except OSError:
                    note("slow-handshake", "closed by the agent")
            conns = alive
            time.sleep(1.0)

    def unsent():
        def setup():
            s = open_conn("unsent-body")
            s.sendall(b"POST /v1/commands/ HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n{")
            return s
        t = threading.Thread(target=held, args=("unsent-body", 4, setup), daemon=True)
        t.start()
        one_shot("unsent-body", b"POST /v1/commands/ HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 16777216\r\n\r\n{")

    workers = [
        lambda: one_shot("http2", b"GET / HTTP/2.0\r\n\r\n"),
        no_read, no_read,
        lambda: held("idle-tcp", 12, lambda: open_conn("idle-tcp", do_tls=False)),
        lambda: held("idle-tls", 6, lambda: open_conn("idle-tls")),
        unsent,
        lambda: one_shot("bad-te", b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n"
                         b"Content-Length: 5\r\n\r\nhello"),
        lambda: one_shot("malformed", b"GET /caf\xc3\xa9 HTTP/1.1\nHost: x\n\n"),
        slow_head, slow_handshake,
    ]
    threads = [threading.Thread(target=w, daemon=True) for w in workers]
    for t in threads:
        t.start()
    stop.wait()
    time.sleep(0.5)
    with lock:
        counts.put((src, tally))


# --- the run ----------------------------------------------------------------

def pct(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--duration", type=float, default=30)
    ap.add_argument("--settle", type=float, default=30, help="longest wait for idle figures")
    ap.add_argument("--plain", action="store_true", help="plain HTTP instead of auto TLS")
    a = ap.parse_args()
    binary = a.bin
    if not binary:
        for c in ("target/x86_64-unknown-linux-musl/release/ironic-agent", "target/release/ironic-agent"):
            if os.path.exists(os.path.join(ROOT, c)):
                binary = os.path.join(ROOT, c)
                break
    if not binary:
        sys.exit("no release binary: run scripts/build-static (or cargo build --release), or pass --bin")
    tls = not a.plain
    work = tempfile.mkdtemp(prefix="api-attack.")
    agent, port, cert, log_path = start_agent(binary, tls, work)
    samples = []  # (phase, threads, rss)
    phase = ["before"]
    done = threading.Event()

    def sampler():
        while not done.is_set():
            th, rss = proc_status(agent.pid)
            samples.append((phase[0], time.monotonic(), th, rss))
            time.sleep(0.25)

    threading.Thread(target=sampler, daemon=True).start()
    results = mp.Queue()
    lstop = mp.Event()
    lp = mp.Process(target=legit, args=(port, cert, tls, lstop, results))
    lp.start()
    time.sleep(3)
    idle_threads, idle_rss = proc_status(agent.pid)
    t_attack = time.time()
    astop = mp.Event()
    counts = mp.Queue()
    procs = [mp.Process(target=attacker, args=(src, port, tls, astop, counts)) for src in ATTACKERS]
    phase[0] = "attack"
    for p in procs:
        p.start()
    time.sleep(a.duration)
    astop.set()
    tallies = [counts.get(timeout=30) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        if p.is_alive():
            p.terminate()
    t_after = time.time()
    phase[0] = "after"
    # back to idle: the thread count of before, RSS within 1 MiB of it
    t0, back = time.monotonic(), None
    while time.monotonic() - t0 < a.settle:
        th, rss = proc_status(agent.pid)
        if th <= idle_threads and rss <= idle_rss + 1.0:
            back = time.monotonic() - t0
            break
        time.sleep(0.25)
    time.sleep(2)
    lstop.set()
    rows = []
    # drain before joining (a process that put items joins only once they are read)
    while True:
        try:
            rows.append(results.get(timeout=0.5))
        except Exception:
            if not lp.is_alive():
                break
    lp.join(timeout=5)
    done.set()
    final = proc_status(agent.pid)
    names = {}
    for t in os.listdir(f"/proc/{agent.pid}/task"):
        try:
            n = open(f"/proc/{agent.pid}/task/{t}/comm").read().strip()
            w = open(f"/proc/{agent.pid}/task/{t}/wchan").read().strip()
        except OSError:
            continue
        names[f"{n}@{w}"] = names.get(f"{n}@{w}", 0) + 1
    agent.kill()
    agent.wait()

    def phase_of(t):
        return "before" if t < t_attack else ("attack" if t < t_after else "after")

    print(f"\nAPI under attack ({'TLS' if tls else 'plain HTTP'}): {len(ATTACKERS)} addresses "
          f"(127.0.0.2-9) x {len(CLASSES)} attack classes for {a.duration:.0f} s; legitimate "
          f"GET /v1/status from 127.0.0.1 every 100 ms, new connection each")
    print(f"binary: {os.path.relpath(binary, ROOT)}; agent log: {log_path}\n")
    print(f"{'phase':<8} {'requests':>8} {'refused':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
          f"{'threads':>8} {'RSS MiB':>8}")
    verdict = None
    for ph in ("before", "attack", "after"):
        mine = [r for r in rows if phase_of(r[0]) == ph]
        lat = [r[1] * 1000 for r in mine if r[2]]
        refused = [r for r in mine if not r[2]]
        s = [x for x in samples if x[0] == ph]
        th = max((x[2] for x in s), default=0)
        rss = max((x[3] for x in s), default=0)
        print(f"{ph:<8} {len(mine):>8} {len(refused):>8} {pct(lat, 50):>8.1f} {pct(lat, 99):>8.1f} "
              f"{max(lat, default=float('nan')):>8.1f} {th:>8} {rss:>8.1f}")
        if ph == "attack":
            verdict = (pct(lat, 99) <= 1000 and not refused, refused[:5])
    print(f"\nidle before: {idle_threads} threads, {idle_rss:.1f} MiB RSS; "
          + (f"back to {idle_threads} threads and RSS within 1 MiB {back:.1f} s after the attack"
             if back is not None else f"NOT back to idle within {a.settle:.0f} s "
             f"(now {final[0]} threads, {final[1]:.1f} MiB)"))
    if back is None:
        print("threads at the end (name@wchan): " + ", ".join(f"{k} x{v}" for k, v in sorted(names.items())))
    met, why = verdict
    print(f"goal (p99 <= 1000 ms, none refused, during the attack): {'MET' if met else 'NOT MET'}"
          + ("" if met else f"; refusals: {why}"))
    print(f"\n{'attack class':<16} {'connections':>11}  what the attackers got (all 8 addresses)")
    for c in CLASSES:
        total = {}
        for _, t in tallies:
            for k, v in t[c].items():
                total[k] = total.get(k, 0) + v
        conns = total.pop("connections", 0)
        what = ", ".join(f"{k}: {v}" for k, v in sorted(total.items(), key=lambda kv: -kv[1]))
        print(f"{c:<16} {conns:>11}  {what}")


if __name__ == "__main__":
    main()
