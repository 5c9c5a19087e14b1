"""The deployment in docker-compose.yml, checked without Docker (run by scripts/deploy-check).

First what a parser sees in the compose file. Then the same topology on 127.0.0.1: a
private redis-server with the compose's own command, two `botwatch serve` with the
compose's environment, and Caddy with deploy/Caddyfile (only its upstreams pointed at
the two local ports). Then requests through Caddy over HTTPS, and to each node directly.
One PASS or FAIL line per check, a closing count, exit status 1 when any check failed.
Every process it starts and its temporary directory go when it ends (on a signal too;
killed outright, it takes its processes with it and leaves the directory). Linux only:
its clients come from 127.0.0.2 and 127.0.0.3. DC_LOG_LINES=N shows more of each
process's log after a failure (15 lines by default).
"""

import argparse
import asyncio
import ctypes
import http.client
import ipaddress
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import yaml
from websockets.asyncio.client import connect as ws_connect

BOT = "deploycheck"
# Bounds of every wait; the whole check takes about 20 s when all is well (most of
# it in the two checks that stop a node, which wait out Caddy's health checks).
START_TIMEOUT = 20.0
SEE_TIMEOUT = 10.0
WHOLE_RUN_TIMEOUT = 90
# The Caddy to run (scripts/deploy-check gives the one it installs).
CADDY = os.environ.get("CADDY", "caddy")


class Failed(Exception):
    """A check that did not hold, with what was seen instead."""


# --- the compose file ------------------------------------------------------------


class MissingVariable(Exception):
    pass


INTERPOLATION = re.compile(
    r"\$(?:(?P<dollar>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text, variables):
    """Compose's variable interpolation ($$, $NAME, ${NAME}, ${NAME:-default},
    ${NAME-default}, ${NAME:?error}, ${NAME?error}, ${NAME:+alt}, ${NAME+alt})."""

    def one(m):
        if m.group("dollar"):
            return "$"
        if m.group("named"):
            return variables.get(m.group("named"), "")
        expr = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?", m.group("braced"), re.S)
        if not expr:
            raise ValueError(f"bad interpolation ${{{m.group('braced')}}}")
        name, op, arg = expr.groups()
        value = variables.get(name)
        if op is None:
            return value or ""
        unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("-"):
            return arg if unset else value
        if op.endswith("+"):
            return "" if unset else arg
        if unset:
            raise MissingVariable(f"{name}: {arg}")
        return value

    return INTERPOLATION.sub(one, text)


def environment_of(service, variables):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: interpolate(str(v), variables) for k, v in env.items()}


class Compose:
    def __init__(self, path):
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path))
        with open(path, encoding="utf-8") as f:
            self.doc = yaml.safe_load(f)  # merge keys (<<: *botwatch) included
        self.services = self.doc.get("services") or {}
        self.nodes = sorted(
            name
            for name, s in self.services.items()
            if "build" in s or str(s.get("image", "")).startswith("botwatch")
        )

    def service(self, name):
        if name not in self.services:
            raise Failed(f"no service {name!r} (services: {', '.join(self.services)})")
        return self.services[name]

    def node_env(self, variables):
        return environment_of(self.services[self.nodes[0]], variables)

    def caddyfile(self):
        """The host path of the file the caddy service mounts as /etc/caddy/Caddyfile."""
        for volume in self.service("caddy").get("volumes") or []:
            parts = (
                volume.split(":")
                if isinstance(volume, str)
                else [volume.get("source"), volume.get("target")]
            )
            if len(parts) >= 2 and parts[1] == "/etc/caddy/Caddyfile":
                return os.path.normpath(os.path.join(self.dir, parts[0]))
        raise Failed("the caddy service mounts nothing at /etc/caddy/Caddyfile")


def flags(command):
    """`--name value` pairs of a command line given as a list."""
    args = command[1:] if command and not str(command[0]).startswith("--") else command
    out = {}
    i = 0
    while i < len(args):
        a = str(args[i])
        if a.startswith("--") and i + 1 < len(args) and not str(args[i + 1]).startswith("--"):
            out[a[2:]] = str(args[i + 1])
            i += 2
        else:
            out[a.lstrip("-")] = ""
            i += 1
    return out


def known_variables(binary, repo):
    """The BOTWATCH_* names `botwatch serve` reads: those its --help shows, and those
    the command line reads from the environment only (secrets, never flags)."""
    help_text = subprocess.run(
        [binary, "serve", "--help"], capture_output=True, text=True, timeout=10, check=True
    ).stdout
    names = set(re.findall(r"\[env: (BOTWATCH_[A-Z0-9_]+)", help_text))
    with open(os.path.join(repo, "crates/cli/src/main.rs"), encoding="utf-8") as f:
        names |= set(re.findall(r'env::var\("(BOTWATCH_[A-Z0-9_]+)"\)', f.read()))
    return names


PROD_VARIABLES = {
    "BOTWATCH_ADMIN_TOKEN": "x" * 48,
    "BOTWATCH_SECRET_KEY": "0" * 64,
    "BOTWATCH_DOMAIN": "botwatch.example.com",
}


def check_services(compose):
    redis = compose.service("redis")
    caddy = compose.service("caddy")
    if not str(redis.get("image", "")).startswith("redis:"):
        raise Failed(f"redis runs image {redis.get('image')!r}")
    if not str(caddy.get("image", "")).startswith("caddy:"):
        raise Failed(f"caddy runs image {caddy.get('image')!r}")
    if len(compose.nodes) != 2:
        raise Failed(f"botwatch nodes: {compose.nodes} (two expected)")
    envs = [environment_of(compose.services[n], PROD_VARIABLES) for n in compose.nodes]
    if envs[0] != envs[1]:
        raise Failed(f"the nodes' environments differ: {envs[0]} / {envs[1]}")
    for n in compose.nodes:
        dep = compose.services[n].get("depends_on") or {}
        if (
            not isinstance(dep, dict)
            or (dep.get("redis") or {}).get("condition") != "service_healthy"
        ):
            raise Failed(f"{n} does not wait for redis to be healthy")
    if "healthcheck" not in redis:
        raise Failed("redis has no healthcheck (the nodes wait for it)")
    if set(caddy.get("depends_on") or []) != set(compose.nodes):
        raise Failed(f"caddy depends on {caddy.get('depends_on')}, not on both nodes")
    return f"redis, {' + '.join(compose.nodes)} (one environment), caddy"


def check_variables(compose, known):
    env = compose.node_env(PROD_VARIABLES)
    names = sorted(k for k in env if k.startswith("BOTWATCH_"))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise Failed(f"botwatch serve does not read {', '.join(unknown)}")
    needed = {
        "BOTWATCH_REDIS_URL",
        "BOTWATCH_LISTEN",
        "BOTWATCH_ADMIN_TOKEN",
        "BOTWATCH_SECRET_KEY",
        "BOTWATCH_PUBLIC_URL",
        "BOTWATCH_TRUSTED_PROXIES",
    }
    missing = sorted(needed - set(names))
    if missing:
        raise Failed(f"the nodes do not set {', '.join(missing)}")
    # Without the secrets the compose file refuses to start (${NAME:?…}).
    for name in ("BOTWATCH_ADMIN_TOKEN", "BOTWATCH_SECRET_KEY", "BOTWATCH_DOMAIN"):
        variables = {k: v for k, v in PROD_VARIABLES.items() if k != name}
        try:
            compose.node_env(variables)
        except MissingVariable:
            continue
        raise Failed(f"the nodes start without {name}")
    return (
        f"{len(names)} names, each read by botwatch serve; "
        "it refuses to start without the admin token, secret key or domain"
    )


def check_redis_command(compose):
    command = compose.service("redis").get("command")
    if not isinstance(command, list) or not command or command[0] != "redis-server":
        raise Failed(f"redis command {command!r} (a list starting with redis-server expected)")
    f = flags(command)
    wanted = {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"}
    wrong = {k: f.get(k) for k, v in wanted.items() if f.get(k) != v}
    if wrong:
        raise Failed(
            f"redis-server {' '.join(map(str, command[1:]))}: expected {wanted}, got {wrong}"
        )
    return " ".join(repr(a) if a == "" else str(a) for a in command)


def check_network(compose):
    """The nodes believe X-Forwarded-For from the compose network only, so that network
    must have the address range they trust: Docker picks one from its pools otherwise,
    and not always inside 172.16.0.0/12 (its defaults include 192.168.0.0/16)."""
    env = compose.node_env(PROD_VARIABLES)
    trusted = [ipaddress.ip_network(t.strip()) for t in env["BOTWATCH_TRUSTED_PROXIES"].split(",")]
    net = (compose.doc.get("networks") or {}).get("default") or {}
    subnets = [
        c.get("subnet") for c in ((net.get("ipam") or {}).get("config") or []) if c.get("subnet")
    ]
    if not subnets:
        raise Failed(
            "the default network has no fixed subnet: Docker may give it addresses outside "
            f"BOTWATCH_TRUSTED_PROXIES ({env['BOTWATCH_TRUSTED_PROXIES']})"
        )
    for subnet in subnets:
        s = ipaddress.ip_network(subnet)
        if not any(s.version == t.version and s.subnet_of(t) for t in trusted):
            raise Failed(
                f"network {s} is not within BOTWATCH_TRUSTED_PROXIES "
                f"{env['BOTWATCH_TRUSTED_PROXIES']}"
            )
    return (
        f"network {', '.join(subnets)}, trusted as the proxy's: {env['BOTWATCH_TRUSTED_PROXIES']}"
    )


def check_caddy_service(compose):
    caddy = compose.service("caddy")
    ports = {str(p) for p in caddy.get("ports") or []}
    for wanted in ("80:80", "443:443", "443:443/udp"):
        if wanted not in ports:
            raise Failed(f"caddy does not publish {wanted} (it publishes {sorted(ports)})")
    targets = {str(v).split(":")[1] for v in caddy.get("volumes") or [] if ":" in str(v)}
    for wanted in ("/data", "/config"):
        if wanted not in targets:
            raise Failed(
                f"caddy keeps {wanted} in no volume (certificates and keys are lost on re-create)"
            )
    if "BOTWATCH_DOMAIN" not in environment_of(caddy, PROD_VARIABLES):
        raise Failed("caddy's environment has no BOTWATCH_DOMAIN (the Caddyfile's site address)")
    return "publishes 80, 443 and 443/udp; /data and /config in volumes; gets BOTWATCH_DOMAIN"


def caddyfile_code(text):
    """Each line of a Caddyfile split into its code and its comment (a # at the
    start of a line or after a space begins one)."""
    for line in text.splitlines(keepends=True):
        m = re.search(r"(^|\s)#", line)
        yield (line[: m.end() - 1], line[m.end() - 1 :]) if m else (line, "")


def node_address(name):
    return re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w.-])")


def check_caddy_version(compose):
    """The Caddy run here is the one the compose deploys, so what the proxy does below
    (a stopped node's requests sent to the other, ingest included) is what it does there."""
    image = str(compose.service("caddy").get("image", ""))
    tag = image.split(":", 1)[1] if ":" in image else "latest"
    out = subprocess.run([CADDY, "version"], capture_output=True, text=True, timeout=10)
    m = re.match(r"v?(\d+\.\d+\.\d+)", out.stdout.strip())
    here = m.group(1) if m else out.stdout.strip()
    if tag != here:
        raise Failed(
            f"the compose runs {image}, this check Caddy {here} ({CADDY}): make them one version"
        )
    return f"{image}, and Caddy {here} here"


def upstreams(compose, caddyfile_text):
    """`service:port` of each node as the Caddyfile must name it (once)."""
    env = compose.node_env(PROD_VARIABLES)
    port = env["BOTWATCH_LISTEN"].rsplit(":", 1)[1]
    out = {}
    for node in compose.nodes:
        name = f"{node}:{port}"
        count = sum(
            len(node_address(name).findall(code)) for code, _ in caddyfile_code(caddyfile_text)
        )
        if count != 1:
            raise Failed(f"the Caddyfile names {name} {count} times (once expected)")
        out[node] = name
    return out


def check_caddyfile(compose):
    path = compose.caddyfile()
    if not os.path.isfile(path):
        raise Failed(f"{path} does not exist")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    names = upstreams(compose, text)
    # Caddy itself reads it, with the domain as production gives it.
    adapted = subprocess.run(
        [CADDY, "adapt", "--adapter", "caddyfile", "--config", path],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "BOTWATCH_DOMAIN": PROD_VARIABLES["BOTWATCH_DOMAIN"]},
    )
    if adapted.returncode != 0:
        raise Failed(f"caddy adapt: {adapted.stderr.strip()[-400:]}")
    return (
        f"{os.path.relpath(path, compose.dir)} exists, caddy adapts it, "
        f"upstreams {', '.join(names.values())}"
    )


# --- processes --------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    # A child outlives a check that is killed outright (SIGKILL) by no more than this.
    _libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Processes:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = {}

    def start(self, name, argv, env=None, cwd=None):
        log = open(os.path.join(self.tmp, f"{name}.log"), "ab")  # a restart adds to it
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.procs[name] = proc
        return proc

    def log(self, name, lines=30):
        try:
            with open(
                os.path.join(self.tmp, f"{name}.log"), encoding="utf-8", errors="replace"
            ) as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def kill(self, name):
        proc = self.procs[name]
        proc.kill()
        proc.wait(timeout=10)

    def stop_all(self):
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 5
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def free_ports(n):
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def wait_for(what, probe, timeout, alive=()):
    """Calls probe() until it answers truthy; fails after timeout or when a process
    it waits on has ended."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for name, proc in alive:
            if proc.poll() is not None:
                raise Failed(f"{what}: {name} exited with {proc.returncode}")
        try:
            answer = probe()
            if answer:
                return answer
        except (OSError, http.client.HTTPException, Failed) as e:
            last = e
        time.sleep(0.1)
    raise Failed(f"{what}: no answer within {timeout:.0f} s ({last})")


# --- HTTP -------------------------------------------------------------------------


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def request(port, method, path, body=None, headers=None, tls=None, source="127.0.0.1", timeout=10):
    """One request to 127.0.0.1:port, from the loopback address `source`; with `tls`
    (an SSLContext) over HTTPS to the name localhost (SNI and certificate check)."""
    sock = socket.create_connection(
        ("127.0.0.1", port), timeout=timeout, source_address=(source, 0)
    )
    host = "localhost" if tls else "127.0.0.1"
    if tls:
        sock = tls.wrap_socket(sock, server_hostname="localhost")
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    conn.sock = sock
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        conn.request(method, path, body=data, headers=hdrs)
        r = conn.getresponse()
        return Answer(r.status, r.headers, r.read())
    finally:
        conn.close()


def expect(answer, status, what):
    if answer.status != status:
        raise Failed(f"{what}: {answer.status} {answer.body[:300]!r} ({status} expected)")
    return answer


# --- the topology -----------------------------------------------------------------


class Topology:
    def __init__(self, compose, binary, tmp):
        self.compose = compose
        self.binary = binary
        self.tmp = tmp
        self.procs = Processes(tmp)
        (self.redis_port, self.caddy_port, self.caddy_http_port, *self.node_ports) = free_ports(
            3 + len(compose.nodes)
        )
        self.token = secrets.token_hex(24)
        self.variables = {
            "BOTWATCH_ADMIN_TOKEN": self.token,
            "BOTWATCH_SECRET_KEY": secrets.token_hex(32),
            # The Caddyfile's site address; with a port, as 443 is not ours to take here.
            "BOTWATCH_DOMAIN": f"localhost:{self.caddy_port}",
        }
        self.redis_dir = os.path.join(tmp, "redis")
        self.tls = None

    def redis_cli(self, *args):
        out = subprocess.run(
            ["redis-cli", "-h", "127.0.0.1", "-p", str(self.redis_port), "--raw", *args],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode != 0:
            raise Failed(f"redis-cli {' '.join(args)}: {out.stderr.strip()}")
        return out.stdout

    def start_redis(self):
        os.makedirs(self.redis_dir)
        command = [str(a) for a in self.compose.service("redis")["command"]]
        # Exactly the compose's arguments; then only where: a private port on
        # 127.0.0.1 and a directory of its own (never the Redis on 6379).
        argv = [
            shutil.which("redis-server"),
            *command[1:],
            "--port",
            str(self.redis_port),
            "--bind",
            "127.0.0.1",
            "--dir",
            self.redis_dir,
            "--daemonize",
            "no",
        ]
        proc = self.procs.start("redis", argv)
        wait_for(
            "redis-server",
            lambda: self.redis_cli("ping").strip() == "PONG",
            START_TIMEOUT,
            [("redis-server", proc)],
        )

    def node_env(self, node):
        env = {
            k: v for k, v in os.environ.items() if not k.startswith("BOTWATCH_") and k != "RUST_LOG"
        }
        env.update(self.compose.node_env(self.variables))
        env["BOTWATCH_REDIS_URL"] = f"redis://127.0.0.1:{self.redis_port}"
        env["BOTWATCH_LISTEN"] = f"127.0.0.1:{self.node_ports[self.compose.nodes.index(node)]}"
        # The compose trusts its Docker network, where Caddy's address is; here Caddy
        # reaches the nodes from 127.0.0.1, and only from there (the checks' own
        # clients come from 127.0.0.2 and 127.0.0.3, which must not be believed).
        env["BOTWATCH_TRUSTED_PROXIES"] = "127.0.0.1"
        return env

    def start_node(self, node):
        port = self.node_ports[self.compose.nodes.index(node)]
        cwd = os.path.join(self.tmp, node)  # anything it keeps on disk stays in tmp
        os.makedirs(cwd, exist_ok=True)
        proc = self.procs.start(node, [self.binary, "serve"], env=self.node_env(node), cwd=cwd)
        wait_for(
            node,
            lambda: request(port, "GET", "/healthz").status == 200,
            START_TIMEOUT,
            [(node, proc)],
        )

    def caddyfile(self):
        with open(self.compose.caddyfile(), encoding="utf-8") as f:
            text = f.read()
        local = {
            name: f"127.0.0.1:{self.node_ports[self.compose.nodes.index(node)]}"
            for node, name in upstreams(self.compose, text).items()
        }
        lines = []
        for code, comment in caddyfile_code(text):
            for name, address in local.items():
                code = node_address(name).sub(address, code)
            lines.append(code + comment)
        text = "".join(lines)
        # Only where Caddy listens and what it may touch: loopback, a free port for
        # the http→https redirects, no admin endpoint, and its local CA's root kept
        # in its own data directory, never installed into this machine's trust store.
        options = (
            "{\n"
            "\tadmin off\n"
            f"\thttp_port {self.caddy_http_port}\n"
            "\tdefault_bind 127.0.0.1\n"
            "\tskip_install_trust\n"
            "}\n"
        )
        return options + text

    def start_caddy(self):
        path = os.path.join(self.tmp, "Caddyfile")
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.caddyfile())
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOTWATCH_")}
        for d in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "HOME"):
            env[d] = os.path.join(self.tmp, "caddy", d.lower())
            os.makedirs(env[d])
        env["BOTWATCH_DOMAIN"] = self.variables["BOTWATCH_DOMAIN"]
        proc = self.procs.start(
            "caddy", [CADDY, "run", "--adapter", "caddyfile", "--config", path], env=env
        )
        root = os.path.join(env["XDG_DATA_HOME"], "caddy/pki/authorities/local/root.crt")

        def ready():
            if not os.path.exists(root):
                return False
            self.tls = ssl.create_default_context(cafile=root)
            return self.https("GET", "/healthz").status == 200

        wait_for("caddy over https", ready, START_TIMEOUT, [("caddy", proc)])

    def start(self):
        self.start_redis()
        for node in self.compose.nodes:
            self.start_node(node)
        self.start_caddy()
        return (
            f"redis :{self.redis_port}, "
            + "".join(
                f"{n} :{p}, " for n, p in zip(self.compose.nodes, self.node_ports, strict=True)
            )
            + f"caddy https://localhost:{self.caddy_port}"
        )

    def https(self, method, path, body=None, headers=None, source="127.0.0.1"):
        return request(self.caddy_port, method, path, body, headers, tls=self.tls, source=source)

    def node(self, node, method, path, body=None, headers=None, source="127.0.0.1"):
        port = self.node_ports[self.compose.nodes.index(node)]
        return request(port, method, path, body, headers, source=source)

    def admin(self):
        return {"Authorization": f"Bearer {self.token}"}


# --- checks on the running topology -------------------------------------------------


def check_health(t):
    expect(t.https("GET", "/healthz"), 200, "/healthz through caddy")
    readyz = expect(t.https("GET", "/readyz"), 200, "/readyz through caddy").json()
    if readyz.get("status") != "ready" or readyz.get("storage") != "redis":
        raise Failed(f"/readyz: {readyz}")
    return f"/healthz 200, /readyz {json.dumps(readyz)}, certificate for localhost from Caddy's CA"


def check_metrics_internal(t):
    """The figures are not served through Caddy at /metrics, nor at any spelling of it
    that might slip past Caddy's matcher into the node's route; each node serves them."""
    spellings = [
        "/metrics",
        "/Metrics",
        "//metrics",
        "/metrics/",
        "/%6detrics",
        "/./metrics",
        "/metrics?x=1",
        "/api/../metrics",
    ]
    served = []
    for path in spellings:
        r = t.https("GET", path)
        # Another path answers the dashboard's page (200, HTML): only the figures count.
        if b"# TYPE botwatch_" in r.body:
            served.append(f"{path} {r.status}")
    if served:
        raise Failed(
            f"through caddy: {', '.join(served)} "
            "(404 expected: figures are per node, and not for the internet)"
        )
    for node in t.compose.nodes:
        r = expect(t.node(node, "GET", "/metrics"), 200, f"/metrics on {node}")
        if b"# TYPE botwatch_" not in r.body:
            raise Failed(f"/metrics on {node} has no figures: {r.body[:200]!r}")
    return f"not through caddy ({len(spellings)} spellings of the path), on each node directly"


def messages_seen(t, node, user):
    answer = expect(
        t.node(
            node, "GET", f"/api/v1/bots/{BOT}/dialogs/{user}/messages?limit=100", headers=t.admin()
        ),
        200,
        f"history on {node}",
    )
    return {m["id"] for m in answer.json()["items"]}


def check_ingest(t, run):
    events = [
        {
            "id": f"{run}-{i}",
            "bot": BOT,
            "type": "message",
            "direction": "in",
            "provider": "web",
            "user": {"id": f"user-{i % 3}"},
            "text": f"hello {i}",
        }
        for i in range(6)
    ]
    answer = expect(
        t.https("POST", "/api/v1/events", events, t.admin()), 202, "ingest through caddy"
    ).json()
    if answer.get("accepted") != len(events):
        raise Failed(f"ingest answered {answer}")
    want = {}
    for e in events:
        want.setdefault(e["user"]["id"], set()).add(e["id"])
    waited = {}
    for node in t.compose.nodes:
        start = time.monotonic()

        def all_seen(node=node):
            return all(ids <= messages_seen(t, node, user) for user, ids in want.items())

        wait_for(f"{node} sees the {len(events)} events", all_seen, SEE_TIMEOUT)
        waited[node] = time.monotonic() - start
    seen = ", ".join(f"{n} in {s * 1000:.0f} ms" for n, s in waited.items())
    return (
        f"{len(events)} events ingested through caddy (202), each read back from every node: {seen}"
    )


async def live_sees_both_nodes(t, run):
    """A WebSocket through caddy, as a browser on the dashboard opens it (its Origin),
    gets the dialogs that move when events are ingested at each node directly."""
    uri = f"wss://localhost:{t.caddy_port}/api/v1/live"
    async with ws_connect(
        uri,
        ssl=t.tls,
        host="127.0.0.1",
        server_hostname="localhost",
        additional_headers=t.admin(),
        origin=f"https://localhost:{t.caddy_port}",
        open_timeout=SEE_TIMEOUT,
    ) as ws:
        topic = f"bot/{BOT}/dialogs"
        await ws.send(json.dumps({"op": "subscribe", "topic": topic}))
        first = json.loads(await asyncio.wait_for(ws.recv(), SEE_TIMEOUT))
        if first.get("topic") != topic or first.get("kind") != "snapshot":
            raise Failed(f"first frame {first}")
        users = {}
        for node in t.compose.nodes:
            user = f"live-{node}"
            event = {
                "id": f"{run}-live-{node}",
                "bot": BOT,
                "type": "message",
                "direction": "in",
                "provider": "web",
                "user": {"id": user},
                "text": f"through {node}",
            }
            loop = asyncio.get_running_loop()
            answer = await loop.run_in_executor(
                None,
                lambda node=node, event=event: t.node(
                    node, "POST", "/api/v1/events", event, t.admin()
                ),
            )
            expect(answer, 202, f"ingest on {node}")
            users[user] = node
        seen = set()
        deadline = loop.time() + SEE_TIMEOUT
        while seen != set(users):
            left = deadline - loop.time()
            if left <= 0:
                raise Failed(f"the live socket saw {sorted(seen)} of {sorted(users)}")
            frame = json.loads(await asyncio.wait_for(ws.recv(), left))
            if frame.get("topic") == topic and frame.get("kind") == "delta":
                seen |= {u for u in users if u in json.dumps(frame.get("data"))}
        return (
            f"subscribed to {topic} through caddy (Origin https://localhost:{t.caddy_port}); "
            "deltas for events ingested on " + " and on ".join(users.values()) + " directly"
        )


def check_live(t, run):
    return asyncio.run(live_sees_both_nodes(t, run))


def check_aof(t, run):
    words = t.redis_cli("config", "get", "append*").split()
    conf = dict(zip(words[::2], words[1::2], strict=True))
    if conf.get("appendonly") != "yes" or conf.get("appendfsync") != "everysec":
        raise Failed(f"redis CONFIG GET append*: {conf}")
    aof_dir = os.path.join(t.redis_dir, "appendonlydir")
    if not os.path.isdir(aof_dir):
        raise Failed(f"no appendonlydir in {t.redis_dir}: {os.listdir(t.redis_dir)}")

    def on_disk():
        data = b"".join(open(os.path.join(aof_dir, f), "rb").read() for f in os.listdir(aof_dir))
        return f"{run}-5".encode() in data

    start = time.monotonic()
    wait_for("the ingested events in the AOF", on_disk, 3.0)
    on_disk_after = time.monotonic() - start
    for node in t.compose.nodes:
        if "appendonly no" in t.procs.log(node, lines=10_000):
            raise Failed(f"{node} warns that Redis runs without AOF")
    return (
        f"appendonly yes, appendfsync everysec, {len(os.listdir(aof_dir))} files in appendonlydir, "
        f"the ingested events written there (seen {on_disk_after * 1000:.0f} ms after looking), "
        "no node warns"
    )


def check_forwarded(t):
    """Caddy's X-Forwarded-For and -Proto are believed, anyone else's are not: a login
    through Caddy from 127.0.0.2 is recorded from 127.0.0.2 (the nodes' TCP peer is
    Caddy at 127.0.0.1) with a Secure cookie; one straight to a node from 127.0.0.3
    with a forged X-Forwarded-For is recorded from 127.0.0.3, without Secure."""
    password = secrets.token_hex(12)
    env = t.node_env(t.compose.nodes[0])
    env["BOTWATCH_PASSWORD"] = password
    add = subprocess.run(
        [t.binary, "users", "add", "checker", "--role", "viewer"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        cwd=t.tmp,
    )
    if add.returncode != 0:
        raise Failed(f"botwatch users add: {add.stderr.strip()[-300:]}")
    login = {"username": "checker", "password": password}
    via_caddy = expect(
        t.https("POST", "/api/v1/session", login, source="127.0.0.2"), 200, "login through caddy"
    )
    direct = expect(
        t.node(
            t.compose.nodes[1],
            "POST",
            "/api/v1/session",
            login,
            headers={"X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https"},
            source="127.0.0.3",
        ),
        200,
        "login straight to a node",
    )
    audit = expect(
        t.https("GET", "/api/v1/audit?limit=50", headers=t.admin()), 200, "audit log"
    ).json()
    froms = [e["detail"].get("from") for e in audit if e.get("action") == "session.login"]
    if sorted(froms) != ["127.0.0.2", "127.0.0.3"]:
        raise Failed(
            f"logins recorded from {froms} "
            "(127.0.0.2 through caddy and 127.0.0.3 straight expected)"
        )
    secure_caddy = "Secure" in (via_caddy.headers.get("Set-Cookie") or "")
    secure_direct = "Secure" in (direct.headers.get("Set-Cookie") or "")
    if not secure_caddy or secure_direct:
        raise Failed(f"Secure cookie through caddy: {secure_caddy}, straight: {secure_direct}")
    return (
        "login through caddy from 127.0.0.2 recorded from 127.0.0.2 with a Secure cookie; "
        "straight to a node from 127.0.0.3 with a forged X-Forwarded-For: 127.0.0.3, not Secure"
    )


def check_operator_file(t):
    """An operator's file of the largest size botwatch takes (20 MiB), sent through
    Caddy, is linked at BOTWATCH_PUBLIC_URL, and that link serves it through Caddy,
    as each node does directly (the file is kept in Redis)."""
    user = "user-0"
    expect(
        t.https("PUT", f"/api/v1/bots/{BOT}/dialogs/{user}/mode", {"mode": "manual"}, t.admin()),
        200,
        "switching the dialog to manual",
    )
    data = os.urandom(20 * 1024 * 1024)
    boundary = secrets.token_hex(16)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {**t.admin(), "Content-Type": f"multipart/form-data; boundary={boundary}"}
    sent = expect(
        t.https("POST", f"/api/v1/bots/{BOT}/dialogs/{user}/messages", body, headers),
        202,
        "a 20 MiB file through caddy",
    ).json()
    urls = [a.get("url", "") for a in sent.get("attachments", [])]
    base = t.node_env(t.compose.nodes[0])["BOTWATCH_PUBLIC_URL"]
    if len(urls) != 1 or not urls[0].startswith(base + "/api/v1/files/"):
        raise Failed(f"the file's address is {urls} (under {base}/api/v1/files/ expected)")
    path = urls[0][len(base) :]
    got = {"caddy": expect(t.https("GET", path), 200, f"{urls[0]} through caddy").body}
    for node in t.compose.nodes:
        got[node] = expect(t.node(node, "GET", path), 200, f"{path} on {node}").body
    wrong = [where for where, b in got.items() if b != data]
    if wrong:
        raise Failed(f"the file differs from what was sent at: {', '.join(wrong)}")
    return (
        f"20 MiB sent through caddy (202), linked at {base}/api/v1/files/…; "
        "the same bytes from that link through caddy and from each node"
    )


def traffic(t, run, tag, seconds):
    """Requests through Caddy for `seconds`: ingest first (round robin sends one of the
    first two to each node, before anything can have marked one down), then mostly
    /readyz with an ingest every fifth. Answers how many were sent, those that failed,
    and the ids of the events ingested."""
    start = time.monotonic()
    failures, ingested, count = [], set(), 0
    while time.monotonic() - start < seconds:
        count += 1
        if count <= 2 or count % 5 == 0:
            event = {
                "id": f"{run}-{tag}-{count}",
                "bot": BOT,
                "type": "message",
                "direction": "in",
                "provider": "web",
                "user": {"id": tag},
                "text": f"{tag} {count}",
            }
            r = t.https("POST", "/api/v1/events", event, t.admin())
            if r.status == 202:
                ingested.add(event["id"])
            else:
                failures.append(
                    f"{time.monotonic() - start:.1f} s: ingest {r.status} {r.body[:80]!r}"
                )
        else:
            r = t.https("GET", "/readyz")
            if r.status != 200:
                failures.append(
                    f"{time.monotonic() - start:.1f} s: /readyz {r.status} {r.body[:80]!r}"
                )
        time.sleep(0.05)
    return count, failures, ingested


def accepted_on(t, node):
    """Events this node took through its own HTTP ingest (its /metrics)."""
    text = expect(t.node(node, "GET", "/metrics"), 200, f"/metrics on {node}").body.decode()
    m = re.search(r"^botwatch_events_accepted_total (\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def check_node_stopped(t, run):
    """A node stopped as `docker compose stop` or a rolling upgrade stops it (SIGTERM):
    no request through Caddy fails while it shuts down; started again, it gets requests
    through Caddy again (it counts ingest it took itself)."""
    node = t.compose.nodes[1]
    t.procs.procs[node].terminate()
    count, failures, _ = traffic(t, run, "stopped", 3.0)
    code = t.procs.procs[node].wait(timeout=10)
    started = time.monotonic()
    t.start_node(node)

    def takes_requests_again():
        event = {
            "bot": BOT,
            "type": "message",
            "direction": "in",
            "provider": "web",
            "user": {"id": "restarted"},
            "text": "again",
        }
        expect(t.https("POST", "/api/v1/events", event, t.admin()), 202, "ingest through caddy")
        return accepted_on(t, node) > 0

    # Caddy left it out after its failed connection (fail_duration 10 s) and until an
    # active health check (every 5 s) finds it up again.
    wait_for(f"caddy sending {node} requests again", takes_requests_again, 20.0)
    # Only now, so that the check after this one has both nodes whatever this found.
    if failures:
        raise Failed(
            f"{len(failures)} of {count} requests through caddy failed while {node} stopped: "
            + ", ".join(failures[:8])
        )
    return (
        f"{node} stopped with SIGTERM (exit {code}): {count} requests through caddy meanwhile, "
        "none failed; "
        f"started again, caddy sent it requests after {time.monotonic() - started:.1f} s"
    )


def check_node_killed(t, run):
    """A node killed outright: every request through Caddy is still answered (the dead
    node refuses the connection, Caddy tries the other), ingest and reads alike, and the
    survivor has what was ingested meanwhile."""
    dead, alive = t.compose.nodes
    t.procs.kill(dead)
    # On past one active health check (5 s), to see before and after it.
    count, failures, ingested = traffic(t, run, "killed", 6.0)
    if failures:
        raise Failed(
            f"{len(failures)} of {count} requests through caddy failed after {dead} was killed: "
            + ", ".join(failures[:8])
        )
    wait_for(
        f"{alive} has what was ingested",
        lambda: ingested <= messages_seen(t, alive, "killed"),
        SEE_TIMEOUT,
    )
    return (
        f"{dead} killed (SIGKILL): {count} requests through caddy in the next 6 s, "
        f"ingest first, none failed; {alive} has the {len(ingested)} events ingested meanwhile"
    )


# --- main -------------------------------------------------------------------------


class Report:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, name, fn, *args):
        try:
            detail = fn(*args)
        except Exception as e:  # noqa: BLE001 - every failure is a FAIL line, with what was seen
            self.failed += 1
            print(
                f"FAIL  {name}: {type(e).__name__ + ': ' if not isinstance(e, Failed) else ''}{e}",
                flush=True,
            )
            return False
        self.passed += 1
        print(f"PASS  {name}" + (f": {detail}" if detail else ""), flush=True)
        return True

    def not_run(self, name, why):
        self.failed += 1
        print(f"FAIL  {name}: not run ({why})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="the botwatch binary")
    parser.add_argument("--compose", default="docker-compose.yml")
    args = parser.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    binary = os.path.abspath(args.bin)

    def give_up(signum, _frame):
        raise SystemExit(f"deploy-check: stopped by signal {signum}")

    signal.signal(signal.SIGTERM, give_up)
    signal.signal(signal.SIGHUP, give_up)

    def too_long(_signum, _frame):
        raise TimeoutError(f"the whole run took over {WHOLE_RUN_TIMEOUT} s")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(WHOLE_RUN_TIMEOUT)

    report = Report()
    compose = Compose(os.path.join(repo, args.compose))
    report.check("compose: services", check_services, compose)
    report.check(
        "compose: BOTWATCH_* names", lambda: check_variables(compose, known_variables(binary, repo))
    )
    report.check("compose: redis command (AOF)", check_redis_command, compose)
    report.check("compose: network and trusted proxies", check_network, compose)
    report.check("compose: caddy service", check_caddy_service, compose)
    report.check("compose: Caddyfile", check_caddyfile, compose)
    report.check("compose: caddy version", check_caddy_version, compose)

    tmp = tempfile.mkdtemp(prefix="botwatch-deploy-check-")
    topology = None
    run = f"dc-{secrets.token_hex(4)}"
    runtime = [
        ("through caddy: /healthz, /readyz over https", check_health),
        ("through caddy: /metrics kept inside", check_metrics_internal),
        ("ingest through caddy, read from each node", lambda t: check_ingest(t, run)),
        ("live WebSocket through caddy, events from each node", lambda t: check_live(t, run)),
        ("redis: AOF on, events in it", lambda t: check_aof(t, run)),
        ("X-Forwarded-For/-Proto from caddy only", check_forwarded),
        ("an operator's 20 MiB file through caddy, at BOTWATCH_PUBLIC_URL", check_operator_file),
        ("a node stopped and started: no request lost", lambda t: check_node_stopped(t, run)),
        ("a node killed: caddy answers through the other", lambda t: check_node_killed(t, run)),
    ]
    try:
        topology = Topology(compose, binary, tmp)
        if report.check("topology starts (no Docker, 127.0.0.1 only)", topology.start):
            for name, fn in runtime:
                report.check(name, fn, topology)
        else:
            for name, _ in runtime:
                report.not_run(name, "the topology did not start")
    finally:
        signal.alarm(0)
        if topology is not None:
            topology.procs.stop_all()
            if report.failed:
                for name in topology.procs.procs:
                    tail = topology.procs.log(name, lines=int(os.environ.get("DC_LOG_LINES", "15")))
                    if tail:
                        print(
                            f"--- {name}, last lines:\n{tail}",
                            end="" if tail.endswith("\n") else "\n",
                        )
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"deploy-check: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
