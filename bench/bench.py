#!/usr/bin/env python3
"""bench.py - weft vs Envoy vs HAProxy on loopback, side by side in one run.

Started by bench/run.sh (see bench/README.md). python3 standard library only.

Shapes (every proxy on 127.0.0.1, wrk -> ... -> one shared upstream nginx):
  pair     wrk -> proxy A (plain HTTP/1.1, "outbound sidecar")
               -> mTLS (TLS 1.3, client certs) + HTTP/2 -> proxy B ("inbound sidecar")
               -> upstream
  gateway  wrk -> gateway (weft: `weft proxy --role gateway`, a Gateway server port;
               envoy/haproxy: configured like proxy A of the pair)
               -> mTLS + HTTP/2 -> inbound sidecar -> upstream
  direct   wrk -> upstream (baseline: what the load generator and upstream can do)

For every repetition, every selected scenario in turn (interleaved): start the processes
pinned with taskset, check them (a GET through the client port returns the exact body; on
B's port TLS 1.3 is used and a client without a certificate is rejected), warm up, then
three measured wrk runs: max throughput (-c50), paced at a fixed rate (-c4, wrk + Lua
schedule; latency percentiles), max throughput with -c200 (RSS with many connections).
CPU = utime+stime of each process tree from /proc; RSS = VmRSS sampled every 0.25 s.
Processes are stopped by PID after each scenario, and on any exit (error, Ctrl-C, SIGTERM).
"""
import argparse
import datetime
import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
CONF = os.path.join(BENCH, "configs")
CLK_TCK = os.sysconf("SC_CLK_TCK")

ENVOY = os.environ.get("ENVOY", os.path.expanduser("~/.cache/envoy-venv/bin/envoy"))
HAPROXY = os.environ.get("HAPROXY", shutil.which("haproxy") or "/usr/sbin/haproxy")
NGINX = os.environ.get("NGINX", shutil.which("nginx") or "/usr/sbin/nginx")
WRK = os.environ.get("WRK", shutil.which("wrk") or "/usr/bin/wrk")
WEFT = os.environ.get("WEFT", os.path.join(REPO, "target", "release", "weft"))

EXPECTED_BODY = b"x" * 99 + b"\n"
MESH_HOST = "server.default.svc.cluster.local"   # what the pair's proxy A routes
GATEWAY_HOST = "gateway.bench.local"              # what the gateway routes (weft-config/mesh.yaml)

LOG = None          # commands.log
PROXY_CPUS = "0"
LIVE = {}           # pid -> (Popen, role): everything started and not yet stopped


def log_cmd(kind, cmd):
    if LOG:
        LOG.write("%s [%s] %s\n" % (datetime.datetime.now().strftime("%H:%M:%S"), kind, cmd))
        LOG.flush()


def info(msg):
    print(msg, flush=True)


class Interrupted(BaseException):
    pass


def _on_signal(sig, _frame):
    # first signal: ignore further ones so the cleanup that follows runs to the end
    for s_ in SIGS:
        signal.signal(s_, signal.SIG_IGN)
    raise Interrupted(signal.Signals(sig).name)


SIGS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}


# --------------------------------------------------------------------------- scenarios
def P(role, argv, ports=(), side=False, cpus=None, ready_url=None, env=None):
    """One process of a scenario. side=True: not a proxy (control plane): its CPU and RSS
    are reported separately and never added to the proxy's."""
    return dict(role=role, argv=argv, ports=list(ports), side=side, cpus=cpus,
                ready_url=ready_url, env=env or {})


def envoy_argv(cfg):
    return [ENVOY, "-c", "{RUN}/" + cfg, "--concurrency", "1", "--disable-hot-restart", "-l", "warning"]


def envoy_scenario(name, shape, pa, pb, aa, ab, host):
    return dict(name=name, shape=shape, peer="envoy", port=pa, mtls_port=pb, host=host,
                vars=dict(PORT_A=pa, PORT_B=pb, ADMIN_A=aa, ADMIN_B=ab, ROUTE_HOST=host),
                configs=["envoy-out.yaml", "envoy-in.yaml"],
                procs=[P("B", envoy_argv("envoy-in.yaml"), [pb]),
                       P("A", envoy_argv("envoy-out.yaml"), [pa])],
                desc="envoy --concurrency 1 x2: A routes Host %s -> mTLS h2 -> B" % host)


def haproxy_scenario(name, shape, pa, pb, host):
    return dict(name=name, shape=shape, peer="haproxy", port=pa, mtls_port=pb, host=host,
                vars=dict(PORT_A=pa, PORT_B=pb, ROUTE_HOST=host),
                configs=["haproxy-out.cfg", "haproxy-in.cfg"],
                procs=[P("B", [HAPROXY, "-db", "-f", "{RUN}/haproxy-in.cfg"], [pb]),
                       P("A", [HAPROXY, "-db", "-f", "{RUN}/haproxy-out.cfg"], [pa])],
                desc="haproxy nbthread 1 x2: A routes Host %s -> mTLS h2 -> B" % host)


def weft_env(extra_env):
    env = {"WEFT_LOG": os.environ.get("WEFT_LOG", "warn")}
    env.update(extra_env)
    return env


def weft_scenario(name, shape, base, a_args):
    """base = first of 5 ports: PORT_A, PORT_B, ADMIN_A, ADMIN_B, CONTROL."""
    pa, pb, aa, ab, cp = base, base + 1, base + 2, base + 3, base + 4
    # one worker per proxy, like envoy --concurrency 1 / haproxy nbthread 1
    extra = (["--concurrency", os.environ.get("WEFT_CONCURRENCY", "1")]
             + shlex.split(os.environ.get("WEFT_EXTRA_ARGS", "")) + list(a_args.get("args", [])))
    env = weft_env(a_args.get("env", {}))
    common = ["--namespace", "default", "--control", "127.0.0.1:%d" % cp,
              "--token-file", "{RUN}/weft-token"]
    control = P("control", [WEFT, "control", "--config", "{RUN}/weft-config",
                            "--state-dir", "{RUN}/weft-control-state", "--listen", "127.0.0.1:%d" % cp,
                            "--ca-cert", "{CERTS}/ca.pem", "--ca-key", "{CERTS}/ca-key.pem",
                            "--token-file", "{RUN}/weft-token"]
                + shlex.split(os.environ.get("WEFT_CONTROL_EXTRA_ARGS", "")),
                [cp], side=True, cpus="{UPSTREAM_CPUS}", env=weft_env({}))
    b = P("B", [WEFT, "proxy", "--role", "sidecar", "--workload", "server"] + common +
          ["--app", "127.0.0.1:{UPSTREAM_PORT}", "--inbound-listen", "127.0.0.1:%d" % pb,
           "--outbound-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:%d" % ab] + extra,
          [pb], ready_url="http://127.0.0.1:%d/ready" % ab, env=env)
    if shape == "pair":
        # --app is required for a sidecar; A's own app (wrk) never gets mesh traffic here
        a = P("A", [WEFT, "proxy", "--role", "sidecar", "--workload", "client"] + common +
              ["--app", "127.0.0.1:9", "--outbound-listen", "127.0.0.1:%d" % pa,
               "--inbound-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:%d" % aa] + extra,
              [pa], ready_url="http://127.0.0.1:%d/ready" % aa, env=env)
        host, desc = MESH_HOST, "weft sidecar (client) -> mTLS h2 -> weft sidecar (server)"
    else:
        # the Gateway server port 80 is bound to PORT_A once the config arrives
        a = P("A", [WEFT, "proxy", "--role", "gateway", "--workload", "gateway"] + common +
              ["--port", "80=127.0.0.1:%d" % pa, "--admin-listen", "127.0.0.1:%d" % aa] + extra,
              [pa], ready_url="http://127.0.0.1:%d/ready" % aa, env=env)
        host, desc = GATEWAY_HOST, "weft gateway (Gateway port 80) -> mTLS h2 -> weft sidecar (server)"
    if a_args.get("label"):
        desc += " [%s]" % a_args["label"]
    return dict(name=name, shape=shape, peer=name.split("-", 1)[1], port=pa, mtls_port=pb, host=host,
                vars=dict(PORT_A=pa, PORT_B=pb), weft=True, procs=[control, b, a], desc=desc)


def scenarios():
    """direct, then per shape: weft, [weft-telemetry-off], envoy, haproxy. Ports: pair 181xx,
    gateway 182xx (weft +10..+14, weft-telemetry-off +20..+24, envoy +30..+33, haproxy +40..+41)."""
    S = [dict(name="direct", shape="direct", peer="direct", port="{UPSTREAM_PORT}", procs=[],
              desc="wrk -> upstream nginx (baseline, no proxy)")]
    off_args = os.environ.get("WEFT_TELEMETRY_OFF_ARGS", "")
    off_env = os.environ.get("WEFT_TELEMETRY_OFF_ENV", "")
    toff = {"args": shlex.split(off_args),
            "env": dict(kv.partition("=")[::2] for kv in shlex.split(off_env)),
            "label": "telemetry off: WEFT_TELEMETRY_OFF_ARGS=%r WEFT_TELEMETRY_OFF_ENV=%r" % (off_args, off_env)}
    for pre, shape, base, host in (("pair", "pair", 18100, MESH_HOST), ("gw", "gateway", 18200, GATEWAY_HOST)):
        S.append(weft_scenario(pre + "-weft", shape, base + 10, {}))
        if off_args or off_env:
            S.append(weft_scenario(pre + "-weft-telemetry-off", shape, base + 20, toff))
        S.append(envoy_scenario(pre + "-envoy", shape, base + 30, base + 31, base + 32, base + 33, host))
        S.append(haproxy_scenario(pre + "-haproxy", shape, base + 40, base + 41, host))
    return S


# --------------------------------------------------------------------------- /proc helpers
def proc_children_map():
    ch = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st.rsplit(")", 1)[1].split()[1])
        ch.setdefault(ppid, []).append(int(d))
    return ch


def proc_tree(pid):
    ch = proc_children_map()
    out, i = [pid], 0
    while i < len(out):
        out.extend(ch.get(out[i], []))
        i += 1
    return out


def cpu_ticks(pid):
    """utime+stime (all threads) in clock ticks, or None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            p = f.read().rsplit(")", 1)[1].split()
        return int(p[11]) + int(p[12])
    except OSError:
        return None


def vmrss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def tree_rss_kb(pid):
    return sum(vmrss_kb(p) or 0 for p in proc_tree(pid))


def n_threads(pid):
    try:
        return len(os.listdir("/proc/%d/task" % pid))
    except OSError:
        return None


def cpu_snapshot(roles):
    """{role: root_pid} -> {role: {pid: ticks}} over each process tree."""
    snap = {}
    for role, pid in roles.items():
        d = {}
        for p in proc_tree(pid):
            t = cpu_ticks(p)
            if t is not None:
                d[p] = t
        snap[role] = d
    return snap


def cpu_delta_s(before, after):
    return {role: sum(t - before.get(role, {}).get(p, 0) for p, t in after[role].items()) / CLK_TCK
            for role in after}


def proc_stat_cores():
    cores = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                p = line.split()
                cores[p[0]] = list(map(int, p[1:9]))  # user nice system idle iowait irq softirq steal
    return cores


def core_util(before, after):
    out = {}
    for c in after:
        d = [a - b for a, b in zip(after[c], before.get(c, after[c]))]
        tot = sum(d) or 1
        out[c] = dict(busy=round(100.0 * (tot - d[3] - d[4]) / tot, 1),
                      steal=round(100.0 * d[7] / tot, 1),
                      task_s=(d[0] + d[1] + d[2]) / CLK_TCK,
                      irq_s=(d[5] + d[6]) / CLK_TCK)
    return out


def cpulist(spec):
    out = []
    for part in (spec or "").split(","):
        if part:
            lo, _, hi = part.partition("-")
            out += ["cpu%d" % i for i in range(int(lo), int(hi or lo) + 1)]
    return out


def wait_quiet(threshold_pct, max_wait, probe=1.0):
    """Wait until processes on the machine use < threshold_pct of one core (1 s windows)."""
    t0 = time.time()
    while True:
        a0 = proc_stat_cores()
        time.sleep(probe)
        u = core_util(a0, proc_stat_cores())
        busy = 100.0 * sum(v["task_s"] for v in u.values()) / probe
        if busy < threshold_pct or time.time() - t0 > max_wait:
            return round(time.time() - t0, 1), round(busy, 1)


def established_to(ports):
    """ESTABLISHED TCP connections whose local (listening-side) port is in ports."""
    cnt = {p: 0 for p in ports}
    for fn in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(fn) as f:
                next(f)
                for line in f:
                    x = line.split()
                    if x[3] == "01":
                        lp = int(x[1].rsplit(":", 1)[1], 16)
                        if lp in cnt:
                            cnt[lp] += 1
        except OSError:
            pass
    return cnt


class RssSampler(threading.Thread):
    def __init__(self, roles, interval=0.25, ports=()):
        super().__init__(daemon=True)
        self.roles, self.interval, self.ports = roles, interval, list(ports)
        self.stop_ev = threading.Event()
        self.last, self.peak, self.conns = {}, {}, {}

    def sample(self):
        for role, pid in self.roles.items():
            tot = tree_rss_kb(pid)
            self.last[role] = tot
            self.peak[role] = max(self.peak.get(role, 0), tot)
        for p, n in established_to(self.ports).items():
            self.conns[p] = max(self.conns.get(p, 0), n)

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            self.stop_ev.wait(self.interval)

    def stop(self):
        self.stop_ev.set()
        self.join()


# --------------------------------------------------------------------------- process control
def subst(s, vars_):
    s = str(s)
    for k, v in vars_.items():
        s = s.replace("{%s}" % k, str(v))
    return s


def render(tmpl, run_dir, vars_):
    path = os.path.join(CONF, tmpl)
    with open(path) as f:
        s = f.read()
    for k, v in vars_.items():
        s = s.replace("@@%s@@" % k, str(v))
    left = set(re.findall(r"@@([A-Z0-9_]+)@@", s))
    if left:
        raise RuntimeError("unsubstituted placeholders in %s: %s" % (path, sorted(left)))
    with open(os.path.join(run_dir, os.path.basename(path)), "w") as f:
        f.write(s)


def start_proc(role, argv, cpus, run_dir, env=None):
    """Start argv in its own session, pinned to cpus, with SIGTERM as parent-death signal
    (so even a SIGKILLed harness leaves nothing running). Stdout+stderr -> {run_dir}/ROLE.log."""
    logf = open(os.path.join(run_dir, "%s.log" % role), "ab")
    full = ["setpriv", "--pdeathsig", "TERM"] + (["taskset", "-c", cpus] if cpus else []) + list(argv)
    e = dict(os.environ)
    e.update(env or {})
    log_cmd("start " + role, " ".join("%s=%s" % (k, shlex.quote(v)) for k, v in (env or {}).items())
            + (" " if env else "") + " ".join(shlex.quote(a) for a in full))
    p = subprocess.Popen(full, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         cwd=run_dir, start_new_session=True, env=e)
    p._logf = logf
    LIVE[p.pid] = (p, role)
    return p


def wait_port(port, proc, timeout=20.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %d" % (proc.returncode, port))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("port %d not listening after %.0fs" % (port, timeout))


def wait_ready(url, proc, timeout=20.0):
    t0, last = time.time(), None
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("process exited with %s before %s was ready" % (proc.returncode, url))
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except Exception as e:  # noqa
            last = e
        time.sleep(0.1)
    raise RuntimeError("%s not ready after %.0fs (%s)" % (url, timeout, last))


def stop_proc(p, role):
    """SIGTERM the process we started (by PID); SIGKILL its own process group after 8 s;
    then SIGKILL by PID any child of it still alive in that group. Nothing by name."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SIGS)  # a Ctrl-C must not cut a cleanup short
    try:
        if p.poll() is None:
            tree = proc_tree(p.pid)
            log_cmd("stop " + role, "kill -TERM %d" % p.pid)
            try:
                os.kill(p.pid, signal.SIGTERM)
                p.wait(timeout=8)
            except subprocess.TimeoutExpired:
                log_cmd("stop " + role, "kill -KILL -%d (own process group)" % p.pid)
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait(timeout=5)
            except OSError:
                pass
            for q in tree[1:]:
                try:
                    if os.getpgid(q) == p.pid:
                        log_cmd("stop " + role, "kill -KILL %d (leftover child)" % q)
                        os.kill(q, signal.SIGKILL)
                except OSError:
                    pass
        if getattr(p, "_logf", None):
            p._logf.close()
        LIVE.pop(p.pid, None)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def stop_all():
    for pid in sorted(LIVE, reverse=True):
        p, role = LIVE.get(pid, (None, None))
        if p is not None:
            stop_proc(p, role)


def log_tail(run_dir, role, n=15):
    try:
        with open(os.path.join(run_dir, "%s.log" % role), "rb") as f:
            return b"\n".join(f.read().splitlines()[-n:]).decode(errors="replace")
    except OSError:
        return ""


# --------------------------------------------------------------------------- checks
def http_check(port, host=None, timeout=10.0):
    """GET / through the client-facing port; retried until the exact body comes back
    (a proxy may listen before its routes arrive)."""
    t0, last = time.time(), None
    while True:
        req = urllib.request.Request("http://127.0.0.1:%d/" % port, headers={"Host": host} if host else {})
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                body = r.read()
                last = dict(status=r.status, body_ok=(body == EXPECTED_BODY), body_len=len(body),
                            headers={k.lower(): v for k, v in r.getheaders()},
                            waited_s=round(time.time() - t0, 2))
                if last["body_ok"]:
                    return last
        except Exception as e:  # noqa
            last = dict(status=getattr(e, "code", None), body_ok=False, error=str(e)[:160])
        if time.time() - t0 > timeout:
            return last
        time.sleep(0.2)


def _h2_get(t, authority=MESH_HOST):
    """Minimal HTTP/2 GET / over an established TLS socket (ALPN h2), stdlib only, for
    mTLS ports that speak only h2 (weft's inbound). Returns ("HTTP/2 <status>", body)."""
    def frame(ftype, flags, stream, payload):
        return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload
    v = authority.encode()
    # :method GET (static 2), :scheme https (7), :path / (4), :authority literal w/o indexing (name 1)
    hdrs = b"\x82\x87\x84" + bytes([0x01, len(v)]) + v
    t.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0, b"") + frame(1, 0x5, 1, hdrs))
    buf, status, body = b"", None, b""
    static = {0x88: 200, 0x89: 204, 0x8a: 206, 0x8b: 304, 0x8c: 400, 0x8d: 404, 0x8e: 500}
    while True:
        while len(buf) < 9 or len(buf) < 9 + int.from_bytes(buf[:3], "big"):
            c = t.recv(65536)
            if not c:
                raise ConnectionError("connection closed by peer")
            buf += c
        n, ftype, flags, sid = int.from_bytes(buf[:3], "big"), buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
        pl, buf = buf[9:9 + n], buf[9 + n:]
        if ftype in (0, 1) and flags & 0x8:  # PADDED
            pl = pl[1:len(pl) - pl[0]]
        if ftype == 4 and not flags & 1:
            t.sendall(frame(4, 1, 0, b""))  # SETTINGS ACK
        elif ftype == 7:
            raise ConnectionError("GOAWAY from peer")
        elif ftype == 3 and sid == 1:
            raise ConnectionError("RST_STREAM from peer")
        elif ftype == 1 and sid == 1:
            if flags & 0x20:  # PRIORITY
                pl = pl[5:]
            status = static.get(pl[0], "?(hpack 0x%02x)" % pl[0]) if pl else "?"
        elif ftype == 0 and sid == 1:
            body += pl
        if ftype in (0, 1) and sid == 1 and flags & 1:  # END_STREAM
            return "HTTP/2 %s" % status, body


def _tls_get(port, certs, with_cert, alpn):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(os.path.join(certs, "ca.pem"))
    ctx.check_hostname = False
    if with_cert:
        ctx.load_cert_chain(os.path.join(certs, "client.pem"), os.path.join(certs, "client-key.pem"))
    ctx.set_alpn_protocols(alpn)
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    t = ctx.wrap_socket(s, server_hostname=MESH_HOST)
    res = dict(tls_version=t.version(), cipher=t.cipher()[0], alpn=t.selected_alpn_protocol())
    try:
        if t.selected_alpn_protocol() == "h2":
            res["status_line"], body = _h2_get(t)
        else:
            t.sendall(b"GET / HTTP/1.1\r\nHost: " + MESH_HOST.encode() + b"\r\nConnection: close\r\n\r\n")
            data = b""
            while True:
                chunk = t.recv(65536)
                if not chunk:
                    break
                data += chunk
            res["status_line"] = data.split(b"\r\n", 1)[0].decode(errors="replace")
            body = data.split(b"\r\n\r\n", 1)[-1]
        res["body_ok"] = body.endswith(EXPECTED_BODY)
    except (ssl.SSLError, OSError) as e:
        res["status_line"] = None
        res["error"] = type(e).__name__ + ": " + str(e)[:120]
    t.close()
    return res


def mtls_check(port, certs):
    """On proxy B's port: offer ALPN h2 (the mesh leg's protocol) with the client cert ->
    must be TLS 1.3 and 200; the same without a client cert -> must be rejected."""
    out = {}
    for k, cert in (("with_cert", True), ("without_cert", False)):
        try:
            out[k] = _tls_get(port, certs, cert, ["h2", "http/1.1"])
        except Exception as e:  # noqa  (a handshake refused for lack of a cert lands here)
            out[k] = dict(error=type(e).__name__ + ": " + str(e)[:160], status_line=None)
    w, wo = out["with_cert"], out["without_cert"]
    ok_with = str(w.get("status_line") or "").endswith(" 200") and w.get("body_ok")
    rejected = not str(wo.get("status_line") or "").endswith(" 200")
    out["summary"] = "%s %s, ALPN %s, with client cert: %s, without: %s" % (
        w.get("tls_version"), w.get("cipher"), w.get("alpn"), "200" if ok_with else "FAIL (%s)" % w,
        "rejected" if rejected else "ACCEPTED (mTLS NOT enforced!)")
    out["ok"] = bool(ok_with and rejected and w.get("tls_version") == "TLSv1.3" and w.get("alpn") == "h2")
    return out


# --------------------------------------------------------------------------- wrk
# Open-schedule pacing for wrk -t1: each request takes the next slot of a fixed schedule
# (1000/RATE ms apart) via wrk's delay() hook, so the offered load is RATE req/s whatever
# the latency. wrk times each request from its write, so the wait is not latency.
PACED_RATE_LUA = """-- generated by bench.py: fixed request rate @@RATE@@ req/s per wrk thread
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = 1000.0 / @@RATE@@
local slot = nil
function delay()
  local t = now_ms()
  if slot == nil or slot < t - 50 then slot = t end -- at most 50 ms of catch-up
  slot = slot + interval
  local d = slot - t
  if d <= 0 then return 0 end
  return math.floor(d)
end
"""

UNIT = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def parse_wrk(out):
    r = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    r["rps"] = float(m.group(1)) if m else None
    m = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", out)
    r["requests"] = int(m.group(1)) if m else 0
    for pct, val, unit in re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s)\s*$", out, re.M):
        r["p" + pct + "_us"] = float(val) * UNIT[unit]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(map(int, m.groups())) if m else 0
    return r


def run_wrk(url, conns, dur, cpus, script=None, host=None):
    argv = ["setpriv", "--pdeathsig", "KILL"] + (["taskset", "-c", cpus] if cpus else []) + [
        WRK, "-t1", "-c%d" % conns, "-d%ds" % dur, "--latency", "--timeout", "5s"]
    if host:
        argv += ["-H", "Host: " + host]
    if script:
        argv += ["-s", script]
    argv.append(url)
    log_cmd("load", " ".join(shlex.quote(a) for a in argv))
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    LIVE[p.pid] = (p, "wrk")
    timer = threading.Timer(dur + 30, p.kill)  # hard bound on every load run
    timer.start()
    try:
        out = p.stdout.read().decode(errors="replace")
        _, status, ru = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
        if p.returncode is None:
            stop_proc(p, "wrk")
        LIVE.pop(p.pid, None)
        p.stdout.close()
    r = parse_wrk(out)
    r["wrk_cpu_s"] = ru.ru_utime + ru.ru_stime
    r["raw"] = out
    r["rc"] = p.returncode
    return r


def measured_load(url, conns, dur, cpus, roles, other_roles, script=None, count_ports=(), host=None):
    """One wrk run: CPU of proxy roles and of the others (upstream, control plane), RSS
    sampling, per-core utilisation, foreign CPU."""
    sampler = RssSampler(dict(roles, **{k: v for k, v in other_roles.items() if k != "upstream"}),
                         ports=count_ports)
    sampler.sample()
    sampler.start()
    allroles = dict(roles, **other_roles)
    c0, s0, self0, t0 = cpu_snapshot(allroles), proc_stat_cores(), os.times(), time.time()
    try:
        w = run_wrk(url, conns, dur, cpus, script, host=host)
    finally:
        sampler.stop()
    c1, s1, self1, t1 = cpu_snapshot(allroles), proc_stat_cores(), os.times(), time.time()
    cpu = cpu_delta_s(c0, c1)
    cores = core_util(s0, s1)
    self_s = (self1.user + self1.system) - (self0.user + self0.system)
    known = sum(cpu.values()) + w["wrk_cpu_s"] + self_s
    w["foreign_pct"] = round(100.0 * max(0.0, sum(v["task_s"] for v in cores.values()) - known) / (t1 - t0), 1)
    n = max(w["requests"], 1)
    w["cpu_s"] = {k: round(v, 3) for k, v in cpu.items()}
    w["proxy_cpu_per10k"] = sum(cpu[k] for k in roles) * 10000.0 / n if roles else None
    w["role_cpu_per10k"] = {k: cpu[k] * 10000.0 / n for k in cpu}
    w["wrk_cpu_per10k"] = w["wrk_cpu_s"] * 10000.0 / n
    w["cores"] = cores
    pc = [c for c in cpulist(PROXY_CPUS) if c in cores]
    w["proxy_irq_s"] = round(sum(cores[c]["irq_s"] for c in pc), 3) if pc else None
    w["proxy_cpu_incl_irq_per10k"] = ((sum(cpu[k] for k in roles) + w["proxy_irq_s"]) * 10000.0 / n
                                      if roles and pc else None)
    w["rss_end_kb"] = dict(sampler.last)
    w["rss_peak_kb"] = dict(sampler.peak)
    w["max_established"] = {str(k): v for k, v in sampler.conns.items()}
    return w


def clean_load(a, url, conns, roles, other_roles, script=None, label="", count_ports=(), host=None):
    """measured_load after waiting for a quiet machine; repeated (up to a.retries times) when
    other processes used more than a.max_noise % of a core during it; least noisy kept."""
    tries = []
    for attempt in range(a.retries + 1):
        waited, busy = wait_quiet(a.quiet_pct, a.quiet_wait)
        w = measured_load(url, conns, a.duration, a.loadgen_cpus, roles, other_roles, script, count_ports, host)
        w["quiet_wait_s"], w["pre_busy_pct"], w["attempt"] = waited, busy, attempt + 1
        tries.append(w)
        if w["foreign_pct"] <= a.max_noise:
            break
        info("    %s: %.0f%% of a core used by other processes%s" % (
            label, w["foreign_pct"], " -> retry" if attempt < a.retries else ""))
    best = min(tries, key=lambda x: x["foreign_pct"])
    best["attempts_foreign_pct"] = [t["foreign_pct"] for t in tries]
    return best


# --------------------------------------------------------------------------- one scenario
def prepare_weft(run_dir):
    cfg = os.path.join(run_dir, "weft-config")
    os.makedirs(cfg, exist_ok=True)
    for f in sorted(os.listdir(os.path.join(BENCH, "weft-config"))):
        shutil.copy(os.path.join(BENCH, "weft-config", f), cfg)
    tok = os.path.join(run_dir, "weft-token")
    fd = os.open(tok, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(os.urandom(32).hex() + "\n")


def run_scenario(sc, rep, a, out_dir, base_vars, upstream_roles):
    run_dir = os.path.join(out_dir, "run", "%s-r%d" % (sc["name"], rep))
    os.makedirs(run_dir, exist_ok=True)
    vars_ = dict(base_vars, RUN=run_dir, **sc.get("vars", {}))
    res = dict(scenario=sc["name"], shape=sc["shape"], peer=sc["peer"], rep=rep, desc=sc.get("desc", ""))
    port = int(subst(sc["port"], vars_))
    host = sc.get("host")
    procs, roles, side = [], {}, {}
    try:
        for c in sc.get("configs", []):
            render(c, run_dir, vars_)
        if sc.get("weft"):
            prepare_weft(run_dir)
        for pr in sc["procs"]:  # in order: control plane, B, A
            cpus = subst(pr["cpus"], vars_) if pr["cpus"] is not None else a.proxy_cpus
            p = start_proc(pr["role"], [subst(x, vars_) for x in pr["argv"]], cpus, run_dir, pr["env"])
            procs.append((pr["role"], p))
            (side if pr["side"] else roles)[pr["role"]] = p.pid
            for pt in pr["ports"]:
                wait_port(int(subst(pt, vars_)), p)
            if pr["ready_url"]:
                wait_ready(pr["ready_url"], p)
        res["argv"] = {r: LIVE[p.pid][0].args for r, p in procs}
        time.sleep(a.settle)
        res["pids"] = {r: proc_tree(pid) for r, pid in dict(roles, **side).items()}
        res["threads_idle"] = {r: n_threads(pid) for r, pid in dict(roles, **side).items()}
        res["affinity"] = {r: sorted(os.sched_getaffinity(pid)) for r, pid in dict(roles, **side).items()}
        res["rss_idle_kb"] = {r: tree_rss_kb(pid) for r, pid in roles.items()}
        res["side_rss_idle_kb"] = {r: tree_rss_kb(pid) for r, pid in side.items()}
        res["http_check"] = http_check(port, host)
        if not res["http_check"].get("body_ok"):
            raise RuntimeError("functional check failed: %s" % res["http_check"])
        if sc.get("mtls_port"):
            res["mtls_check"] = mtls_check(int(sc["mtls_port"]), vars_["CERTS"])
            info("    functional check 200 + body ok; mTLS check: %s" % res["mtls_check"]["summary"])
            if not res["mtls_check"]["ok"]:
                raise RuntimeError("mTLS check failed: %s" % res["mtls_check"]["summary"])
        url = "http://127.0.0.1:%d/" % port
        if a.warmup > 0:
            run_wrk(url, a.conns, a.warmup, a.loadgen_cpus, host=host)
        others = dict(upstream_roles, **side)
        cports = [int(vars_["UPSTREAM_PORT"])] + ([int(sc["mtls_port"])] if sc.get("mtls_port") else [])
        res["max"] = clean_load(a, url, a.conns, roles, others, label="max", count_ports=cports, host=host)
        res["paced"] = clean_load(a, url, a.paced_conns, roles, others, script=a.paced_script,
                                  label="paced", count_ports=cports, host=host)
        res["max200"] = clean_load(a, url, a.conns_high, roles, others, label="max c%d" % a.conns_high,
                                   count_ports=cports, host=host)
        res["rss_after_kb"] = {r: tree_rss_kb(pid) for r, pid in roles.items()}
        res["side_rss_after_kb"] = {r: tree_rss_kb(pid) for r, pid in side.items()}
        res["threads_after"] = {r: n_threads(pid) for r, pid in dict(roles, **side).items()}
        for k in ("max", "paced", "max200"):
            if res[k]["rc"] != 0 or res[k]["rps"] is None:
                raise RuntimeError("wrk %s run failed (rc %s): %s" % (k, res[k]["rc"], res[k]["raw"][-300:]))
        res["ok"] = True
    except Exception as e:  # noqa
        res["ok"] = False
        res["error"] = str(e)
        res["log_tail"] = {r: log_tail(run_dir, r) for r, _ in procs}
        info("    ERROR: %s" % e)
        for r, _ in procs:
            t = log_tail(run_dir, r, 6)
            if t:
                info("      [%s log] %s" % (r, t.replace("\n", "\n      ")))
    finally:
        for role, p in reversed(procs):
            stop_proc(p, role)
    return res


# --------------------------------------------------------------------------- aggregation
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, nd=0, scale=1.0):
    if v is None:
        return "-"
    return ("{:,.%df}" % nd).format(v * scale)


def fr(v):  # ratio
    return "-" if v is None else "%.2f" % v


METRICS = {  # key -> (label, function of one result, better when)
    "cpu_max": ("CPU/req @max c50", lambda r: r["max"]["proxy_cpu_per10k"], "lower"),
    "cpu_paced": ("CPU/req @paced", lambda r: r["paced"]["proxy_cpu_per10k"], "lower"),
    "cpu_max200": ("CPU/req @max c200", lambda r: r["max200"]["proxy_cpu_per10k"], "lower"),
    "rps": ("max req/s c50", lambda r: r["max"]["rps"], "higher"),
    "rps200": ("max req/s c200", lambda r: r["max200"]["rps"], "higher"),
    "p50": ("p50 @paced", lambda r: r["paced"].get("p50_us"), "lower"),
    "p90": ("p90 @paced", lambda r: r["paced"].get("p90_us"), "lower"),
    "p99": ("p99 @paced", lambda r: r["paced"].get("p99_us"), "lower"),
    "rss_idle": ("RSS idle", lambda r: sum(r["rss_idle_kb"].values()), "lower"),
    "rss_c50": ("RSS peak c50", lambda r: sum(r["max"]["rss_peak_kb"].get(k, 0) for k in r["rss_idle_kb"]), "lower"),
    "rss_c200": ("RSS peak c200", lambda r: sum(r["max200"]["rss_peak_kb"].get(k, 0) for k in r["rss_idle_kb"]), "lower"),
}
RATIO_KEYS = ["cpu_max", "cpu_paced", "cpu_max200", "rps", "rps200", "p50", "p90", "p99", "rss_idle", "rss_c50", "rss_c200"]


def per_rep_ratio(results, name, ref, f):
    """median over reps of f(name) / f(ref) within the same rep (reps where both ran ok)."""
    by = {(r["scenario"], r["rep"]): r for r in results if r.get("ok")}
    xs = []
    for (n, rep), r in by.items():
        if n == name and (ref, rep) in by:
            x, y = f(r), f(by[(ref, rep)])
            if x is not None and y:
                xs.append(x / y)
    return med(xs), xs


def aggregate(results, names):
    rows = []
    for name in names:
        rs = [r for r in results if r["scenario"] == name and r.get("ok")]
        row = dict(name=name, n=len(rs), nfail=len([r for r in results if r["scenario"] == name and not r.get("ok")]))
        if not rs:
            row["errors_text"] = [r.get("error") for r in results if r["scenario"] == name]
            rows.append(row)
            continue
        g = lambda f: med([f(r) for r in rs])  # noqa
        row.update(shape=rs[0]["shape"], peer=rs[0]["peer"], desc=rs[0]["desc"])
        for k, (_, f, _) in METRICS.items():
            row[k] = g(f)
            xs = [f(r) for r in rs if f(r) is not None]
            row[k + "_spread"] = (min(xs), max(xs)) if xs else (None, None)
        roles = list(rs[0]["rss_idle_kb"])
        side_roles = list(rs[0].get("side_rss_idle_kb", {}))
        row["roles"] = {k: dict(
            cpu_max=g(lambda r: r["max"]["role_cpu_per10k"][k]),
            cpu_paced=g(lambda r: r["paced"]["role_cpu_per10k"][k]),
            rss_idle=g(lambda r: r["rss_idle_kb"][k]),
            rss_c50=g(lambda r: r["max"]["rss_peak_kb"].get(k)),
            rss_c200=g(lambda r: r["max200"]["rss_peak_kb"].get(k)),
            threads=g(lambda r: r["threads_after"].get(k))) for k in roles}
        row["side"] = {k: dict(
            cpu_s_max=g(lambda r: r["max"]["cpu_s"].get(k)),
            cpu_s_paced=g(lambda r: r["paced"]["cpu_s"].get(k)),
            cpu_s_max200=g(lambda r: r["max200"]["cpu_s"].get(k)),
            rss_idle=g(lambda r: r["side_rss_idle_kb"].get(k)),
            rss_after=g(lambda r: r["side_rss_after_kb"].get(k))) for k in side_roles}
        row["cpu_max_irq"] = g(lambda r: r["max"].get("proxy_cpu_incl_irq_per10k"))
        row["max_p50"] = g(lambda r: r["max"].get("p50_us"))
        row["max_p99"] = g(lambda r: r["max"].get("p99_us"))
        row["paced_rps"] = g(lambda r: r["paced"]["rps"])
        row["up_cpu10k"] = g(lambda r: r["max"]["role_cpu_per10k"]["upstream"])
        row["wrk_cpu10k"] = g(lambda r: r["max"]["wrk_cpu_per10k"])
        row["core_busy"] = {c: g(lambda r: r["max"]["cores"][c]["busy"]) for c in rs[0]["max"]["cores"]}
        row["foreign_max"] = max(r[k]["foreign_pct"] for r in rs for k in ("max", "paced", "max200"))
        row["steal"] = max(v["steal"] for r in rs for k in ("max", "paced", "max200") for v in r[k]["cores"].values())
        row["errors"] = sum(r[k]["non2xx"] + r[k]["socket_errors"] for r in rs for k in ("max", "paced", "max200"))
        row["conns_c50"] = {p: g(lambda r: r["max"]["max_established"].get(p)) for p in rs[0]["max"]["max_established"]}
        row["conns_c200"] = {p: g(lambda r: r["max200"]["max_established"].get(p)) for p in rs[0]["max200"]["max_established"]}
        row["mtls"] = (rs[0].get("mtls_check") or {}).get("summary")
        rows.append(row)
    return rows


def comparisons(names):
    """(shape label, subject, reference) pairs: weft vs each peer in the same shape, and
    weft telemetry off vs on."""
    out = []
    for pre, label in (("pair-", "pair"), ("gw-", "gateway")):
        if pre + "weft" in names:
            for peer in ("envoy", "haproxy"):
                if pre + peer in names:
                    out.append((label, pre + "weft", pre + peer))
        if pre + "weft-telemetry-off" in names and pre + "weft" in names:
            out.append((label, pre + "weft-telemetry-off", pre + "weft"))
    return out


def ratio_table(results, names):
    cmp_ = comparisons(names)
    h = ["shape", "weft / peer"] + [METRICS[k][0] for k in RATIO_KEYS]
    lines = ["| " + " | ".join(h) + " |", "|" + "---|" * len(h)]
    for shape, subj, ref in cmp_:
        cells = []
        for k in RATIO_KEYS:
            m, xs = per_rep_ratio(results, subj, ref, METRICS[k][1])
            cells.append(fr(m) + ("" if len(xs) < 2 else " (%s–%s)" % (fr(min(xs)), fr(max(xs)))))
        label = "%s / %s" % (subj.split("-", 1)[1], ref.split("-", 1)[1])
        lines.append("| %s | %s | %s |" % (shape, label, " | ".join(cells)))
    if not cmp_:
        lines.append("| (no weft scenario with a peer in the same shape ran) |" + " |" * (len(h) - 1))
    return "\n".join(lines)


def abs_table(rows, a):
    h = ["scenario", "max req/s c%d" % a.conns, "CPU s/10k req @max", "CPU s/10k @paced",
         "p50 / p90 / p99 µs @%d req/s" % a.paced_rate, "max req/s c%d" % a.conns_high,
         "CPU s/10k @c%d" % a.conns_high, "RSS MB idle / c%d / c%d" % (a.conns, a.conns_high),
         "reps ok", "mTLS check"]
    lines = ["| " + " | ".join(h) + " |", "|" + "---|" * len(h)]
    for r in rows:
        if not r.get("n"):
            lines.append("| %s | FAILED (%d): %s |%s" % (r["name"], r.get("nfail", 0),
                                                       "; ".join(str(e)[:80] for e in r.get("errors_text", [])),
                                                       " |" * (len(h) - 2)))
            continue
        mb = lambda v: fmt(v, 1, 1 / 1024.0)  # noqa
        lines.append("| %s | %s | %s | %s | %s / %s / %s | %s | %s | %s | %d/%d | %s |" % (
            r["name"], fmt(r["rps"]), fmt(r["cpu_max"], 3), fmt(r["cpu_paced"], 3),
            fmt(r["p50"]), fmt(r["p90"]), fmt(r["p99"]), fmt(r["rps200"]), fmt(r["cpu_max200"], 3),
            "%s / %s / %s" % (mb(r["rss_idle"]), mb(r["rss_c50"]), mb(r["rss_c200"])) if r["roles"] else "-",
            r["n"], r["n"] + r["nfail"], ("ok: " + r["mtls"]) if r.get("mtls") else "-"))
    return "\n".join(lines)


def detail_tables(rows, a):
    mb = lambda v: fmt(v, 1, 1 / 1024.0)  # noqa
    lines = ["| scenario | process | CPU s/10k @max | CPU s/10k @paced | RSS MB idle / c%d / c%d | threads |" % (
        a.conns, a.conns_high), "|---|---|---|---|---|---|"]
    for r in rows:
        for k, v in (r.get("roles") or {}).items():
            lines.append("| %s | %s | %s | %s | %s / %s / %s | %s |" % (
                r["name"], k, fmt(v["cpu_max"], 3), fmt(v["cpu_paced"], 3), mb(v["rss_idle"]),
                mb(v["rss_c50"]), mb(v["rss_c200"]), fmt(v["threads"])))
        for k, v in (r.get("side") or {}).items():
            lines.append("| %s | %s (side, not proxy CPU) | %s s in max run | %s s in paced run | %s / after: %s | - |" % (
                r["name"], k, fmt(v["cpu_s_max"], 3), fmt(v["cpu_s_paced"], 3), mb(v["rss_idle"]), mb(v["rss_after"])))
    lines += ["", "| scenario | proxy CPU+softirq s/10k @max | max-run p50 / p99 µs | upstream / wrk CPU s/10k "
              "| core busy %% @max | conns into upstream / B (c%d; c%d) | worst foreign CPU %% | max steal %% | errors |"
              % (a.conns, a.conns_high), "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("n"):
            lines.append("| %s | %s | %s / %s | %s / %s | %s | %s; %s | %s | %s | %s |" % (
                r["name"], fmt(r["cpu_max_irq"], 3), fmt(r["max_p50"]), fmt(r["max_p99"]),
                fmt(r["up_cpu10k"], 3), fmt(r["wrk_cpu10k"], 3),
                " ".join("%s=%s" % (c, fmt(v)) for c, v in r["core_busy"].items()),
                " / ".join(fmt(v) for v in r["conns_c50"].values()),
                " / ".join(fmt(v) for v in r["conns_c200"].values()),
                fmt(r["foreign_max"]), fmt(r["steal"], 1), r["errors"]))
    lines += ["", "| scenario | spread min–max: max req/s c%d | CPU s/10k @max | CPU s/10k @paced | p50 µs | p99 µs |" % a.conns,
              "|---|---|---|---|---|---|"]
    for r in rows:
        if r.get("n"):
            f2 = lambda k, nd=0: "%s–%s" % (fmt(r[k + "_spread"][0], nd), fmt(r[k + "_spread"][1], nd))  # noqa
            lines.append("| %s | %s | %s | %s | %s | %s |" % (
                r["name"], f2("rps"), f2("cpu_max", 3), f2("cpu_paced", 3), f2("p50"), f2("p99")))
    return "\n".join(lines)


def report(meta, results):
    a = argparse.Namespace(**meta["args"])
    names = []
    for r in results:
        if r["scenario"] not in names:
            names.append(r["scenario"])
    rows = aggregate(results, names)
    v = meta.get("versions", {})
    nrep = max([r["rep"] for r in results] or [0])
    head = [
        "# weft vs Envoy vs HAProxy, %s" % meta["date"],
        "",
        "Machine: %s, %s cores, kernel %s. weft %s; %s; %s; upstream %s; %s." % (
            meta["cpu_model"], meta["nproc"], meta["kernel"], v.get("weft"), v.get("envoy"),
            v.get("haproxy"), v.get("nginx"), v.get("wrk")),
        "Run: `%s` — %d rep(s) (scenarios interleaved within each rep), %d s per measured run; "
        "proxies pinned to CPU %s, wrk to CPU %s, upstream nginx and weft's control plane to CPU %s. "
        "weft env: %s." % (
            meta.get("command", "bench/run.sh"), nrep, a.duration, a.proxy_cpus or "any", a.loadgen_cpus or "any",
            a.upstream_cpus or "any", meta.get("weft_env", "")),
        "",
        "## Ratios: weft / peer, same shape, same rep (median over reps; min–max when ≥2 reps)",
        "",
        "CPU/req, latency and RSS: **< 1 = weft uses less / is faster**. max req/s: **> 1 = weft serves more**. "
        "CPU counts every process of the proxy under test (A + B), never the control plane.",
        "",
        ratio_table(results, names),
        "",
        "## Medians",
        "",
        "CPU s/10k req = CPU seconds (user+sys, all proxy processes of the scenario) per 10,000 "
        "requests. Paced = %d req/s fixed schedule over %d connections. RSS = sum over the scenario's "
        "proxies: idle after start, peak during the c%d and c%d max runs." % (
            a.paced_rate, a.paced_conns, a.conns, a.conns_high),
        "",
        abs_table(rows, a),
        "",
        "## Per process and diagnostics",
        "",
        detail_tables(rows, a),
    ]
    if not any(r["name"].endswith("telemetry-off") for r in rows):
        head += ["", "Telemetry off vs on: not measured — weft has no switch to turn telemetry off yet. "
                 "Set `WEFT_TELEMETRY_OFF_ARGS` (extra `weft proxy` flags) and/or `WEFT_TELEMETRY_OFF_ENV` "
                 "(`K=V ...`) to add the scenarios `pair-weft-telemetry-off` / `gw-weft-telemetry-off`."]
    return "\n".join(head) + "\n", rows


# --------------------------------------------------------------------------- versions
def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=20).stdout.strip()
    except Exception:  # noqa
        return ""


def versions():
    ev = sh("%s --version" % shlex.quote(ENVOY))
    m = re.search(r"/(\d+\.\d+\.\d+)/", ev)
    rev = sh("git -C %s rev-parse --short HEAD" % shlex.quote(REPO))
    dirty = sh("git -C %s status --porcelain --untracked-files=no -- crates Cargo.toml Cargo.lock" % shlex.quote(REPO))
    return dict(
        weft="%s (%s%s)" % (sh("%s --version" % shlex.quote(WEFT)).replace("weft ", "") or "?", rev or "?", ", modified" if dirty else ""),
        envoy="envoy %s" % (m.group(1) if m else ev[:60]),
        haproxy="haproxy " + (re.findall(r"version (\S+)", sh("%s -v" % shlex.quote(HAPROXY))) or ["?"])[0],
        nginx=sh("%s -v 2>&1" % shlex.quote(NGINX)).replace("nginx version: ", ""),
        wrk=" ".join(sh("%s -v 2>&1" % shlex.quote(WRK)).split("\n")[0].split()[:2]))


# --------------------------------------------------------------------------- main
def main():
    global LOG, PROXY_CPUS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    ap.add_argument("--reps", type=int, default=int(env("REPS", 3)))
    ap.add_argument("--duration", type=int, default=int(env("DURATION", 10)), help="seconds per measured wrk run")
    ap.add_argument("--only", default=env("ONLY", ""), help="comma-separated name globs, e.g. 'pair-*' or '*weft*,*envoy'")
    ap.add_argument("--skip", default=env("SKIP", ""))
    ap.add_argument("--warmup", type=int, default=int(env("WARMUP", 2)))
    ap.add_argument("--settle", type=float, default=1.0, help="seconds between ready and the idle-RSS reading")
    ap.add_argument("--conns", type=int, default=int(env("CONNS", 50)), help="wrk connections, max run")
    ap.add_argument("--conns-high", type=int, default=int(env("CONNS_HIGH", 200)), help="wrk connections, second max run (RSS)")
    ap.add_argument("--paced-conns", type=int, default=int(env("PACED_CONNS", 4)))
    ap.add_argument("--paced-rate", type=int, default=int(env("PACED_RATE", 1000)), help="req/s of the paced (latency) run")
    ap.add_argument("--proxy-cpus", default=env("PROXY_CPUS", "0"), help="taskset list for proxies ('' = no pinning)")
    ap.add_argument("--loadgen-cpus", default=env("LOADGEN_CPUS", "1"))
    ap.add_argument("--upstream-cpus", default=env("UPSTREAM_CPUS", "1"), help="upstream nginx and weft control plane")
    ap.add_argument("--upstream-port", type=int, default=int(env("UPSTREAM_PORT", 18080)))
    ap.add_argument("--certs", default=env("CERTS", os.path.join(BENCH, "certs")))
    ap.add_argument("--out", default=None, help="results dir (default bench/results/<timestamp>)")
    ap.add_argument("--quiet-pct", type=float, default=float(env("QUIET_PCT", 25)),
                    help="before each measured run wait until other processes use < this %% of one core")
    ap.add_argument("--quiet-wait", type=float, default=float(env("QUIET_WAIT", 90)), help="max seconds to wait for that")
    ap.add_argument("--max-noise", type=float, default=float(env("MAX_NOISE", 20)),
                    help="repeat a run if other processes used more than this %% of a core during it")
    ap.add_argument("--retries", type=int, default=int(env("RETRIES", 2)))
    ap.add_argument("--report", metavar="RESULTS_DIR", help="only print the tables of an earlier run")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    a = ap.parse_args()
    PROXY_CPUS = a.proxy_cpus

    if a.report:
        with open(os.path.join(a.report, "results.json")) as f:
            d = json.load(f)
        print(report(d["meta"], d["results"])[0])
        return 0

    S = scenarios()
    if a.only:
        S = [s for s in S if any(fnmatch.fnmatch(s["name"], p.strip()) for p in a.only.split(","))]
    if a.skip:
        S = [s for s in S if not any(fnmatch.fnmatch(s["name"], p.strip()) for p in a.skip.split(","))]
    if a.list:
        for s in S:
            print("%-24s %-8s port %-6s %s" % (s["name"], s["shape"], s["port"], s.get("desc", "")))
        return 0
    if not S:
        sys.exit("no scenarios selected (see --list)")
    if any(s.get("weft") for s in S) and not os.access(WEFT, os.X_OK):
        sys.exit("weft binary not found at %s (build it, or set WEFT=)" % WEFT)

    for sig in SIGS:
        signal.signal(sig, _on_signal)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    results_root = os.path.join(BENCH, "results")
    out_dir = os.path.abspath(a.out or os.path.join(results_root, stamp))
    os.makedirs(out_dir, exist_ok=True)
    LOG = open(os.path.join(out_dir, "commands.log"), "a")
    a.paced_script = os.path.join(out_dir, "paced.lua")
    with open(a.paced_script, "w") as f:
        f.write(PACED_RATE_LUA.replace("@@RATE@@", str(a.paced_rate)))

    base_vars = dict(BENCH=BENCH, CERTS=os.path.abspath(a.certs), UPSTREAM_PORT=a.upstream_port,
                     PROXY_CPUS=a.proxy_cpus, UPSTREAM_CPUS=a.upstream_cpus)
    per = 2 + a.warmup + 3 * (a.duration + 1.0)  # measured: ~16 s per scenario at --duration 3
    info("bench: %d scenario(s) x %d rep(s), %d s runs (~%.0f min if the machine is quiet); proxies on CPU %s, "
         "wrk on CPU %s, upstream on CPU %s\n       out=%s" % (
             len(S), a.reps, a.duration, len(S) * a.reps * per / 60.0, a.proxy_cpus or "any",
             a.loadgen_cpus or "any", a.upstream_cpus or "any", out_dir))
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    m = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    meta = dict(date=datetime.datetime.now().isoformat(timespec="seconds"), args=dict(vars(a)),
                nproc=os.cpu_count(), cpu_model=m.group(1).strip() if m else "?", kernel=os.uname().release,
                argv=sys.argv, command=os.environ.get("BENCH_COMMAND", " ".join(sys.argv)),
                versions=versions(), weft_bin=WEFT,
                weft_env=" ".join("%s=%s" % kv for kv in sorted(weft_env({}).items())) +
                ("; WEFT_EXTRA_ARGS=%r" % env("WEFT_EXTRA_ARGS") if env("WEFT_EXTRA_ARGS") else ""),
                scenarios={s["name"]: s.get("desc", "") for s in S})
    results = []
    up = None
    t_start = time.time()
    try:
        up_dir = os.path.join(out_dir, "run", "upstream")
        os.makedirs(up_dir, exist_ok=True)
        render("upstream-nginx.conf", up_dir, dict(base_vars, RUN=up_dir))
        up = start_proc("upstream", [NGINX, "-p", up_dir, "-e", "stderr", "-c", up_dir + "/upstream-nginx.conf"],
                        a.upstream_cpus, up_dir)
        wait_port(a.upstream_port, up)
        chk = http_check(a.upstream_port)
        if not chk.get("body_ok"):
            raise RuntimeError("upstream check failed: %s" % chk)
        for rep in range(1, a.reps + 1):
            for sc in S:
                info("[rep %d/%d] %s: %s" % (rep, a.reps, sc["name"], sc.get("desc", "")))
                r = run_scenario(sc, rep, a, out_dir, base_vars, {"upstream": up.pid})
                if r.get("ok"):
                    m_, p_, h_ = r["max"], r["paced"], r["max200"]
                    info("    c%d max %s req/s, proxy CPU %s s/10k | paced %s req/s p50/p90/p99 %s/%s/%s µs | "
                         "c%d max %s req/s | RSS idle %s MB | foreign CPU %s/%s/%s%%" % (
                             a.conns, fmt(m_["rps"]), fmt(m_["proxy_cpu_per10k"], 3), fmt(p_["rps"]),
                             fmt(p_.get("p50_us")), fmt(p_.get("p90_us")), fmt(p_.get("p99_us")),
                             a.conns_high, fmt(h_["rps"]),
                             fmt(sum(r["rss_idle_kb"].values()) / 1024.0, 1) if r["rss_idle_kb"] else "-",
                             fmt(m_["foreign_pct"]), fmt(p_["foreign_pct"]), fmt(h_["foreign_pct"])))
                results.append(r)
                with open(os.path.join(out_dir, "results.json"), "w") as f:
                    json.dump(dict(meta=meta, results=results), f, indent=1, default=str)
    except (KeyboardInterrupt, Interrupted) as e:
        info("\ninterrupted (%s): stopping everything this run started" % (str(e) or type(e).__name__))
        meta["interrupted"] = True
    finally:
        stop_all()
        if LOG:
            LOG.close()
    meta["elapsed_s"] = round(time.time() - t_start)
    if not results:
        info("no results")
        return 1
    text, rows = report(meta, results)
    text += "\nElapsed: %d min %d s. Raw data: results.json; commands: commands.log; logs: run/.\n" % (
        meta["elapsed_s"] // 60, meta["elapsed_s"] % 60)
    with open(os.path.join(out_dir, "table.md"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(dict(meta=meta, rows=rows), f, indent=1, default=str)
    if os.path.dirname(out_dir) == os.path.abspath(results_root):
        shutil.copy(os.path.join(out_dir, "table.md"), os.path.join(results_root, "latest.md"))
    info("\n" + text + "\nresults: %s" % out_dir)
    failed = [r["scenario"] + "-r%d" % r["rep"] for r in results if not r.get("ok")]
    if failed:
        info("FAILED: " + ", ".join(failed))
    return 1 if failed or meta.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
