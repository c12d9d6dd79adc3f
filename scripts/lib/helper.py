"""Small helpers for scripts/test-servers: free ports, detached spawning, readiness, moto setup.

Only the standard library, except `moto-bootstrap` (boto3). Run with the test venv's python.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time

POLL_SECONDS = 0.1
LOG_TAIL_LINES = 40


def free_ports(specs):
    """Print NAME=PORT for each NAME[:COUNT]; COUNT consecutive free ports (first is printed)."""
    held = []
    out = []
    for spec in specs:
        name, _, count = spec.partition(":")
        count = int(count or "1")
        while True:
            probe = socket.socket()
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
            block = [probe]
            try:
                for offset in range(1, count):
                    extra = socket.socket()
                    extra.bind(("127.0.0.1", base + offset))
                    block.append(extra)
            except OSError:
                for sock in block:
                    sock.close()
                continue
            held.extend(block)
            out.append(f"{name}={base}")
            break
    for sock in held:
        sock.close()
    print("\n".join(out))


def spawn(log_path, cwd, argv):
    """Start argv in a new session (its own process group), output to log_path; print its pid."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
        )
    print(proc.pid)


def http_status(url):
    """Status code of GET url, or None when nothing answers yet."""
    host_port, _, path = url.removeprefix("http://").partition("/")
    host, _, port = host_port.partition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2) as sock:
            sock.sendall(f"GET /{path} HTTP/1.0\r\nHost: {host_port}\r\n\r\n".encode())
            head = sock.recv(64).decode("latin-1")
    except OSError:
        return None
    parts = head.split(" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def is_ready(probe):
    """True when a probe ("http://..." answering 200, or "cmd:<shell>" exiting 0) succeeds."""
    if probe.startswith("cmd:"):
        done = subprocess.run(probe[4:], shell=True, capture_output=True)
        return done.returncode == 0
    return http_status(probe) == 200


def alive(pid):
    """True while the process exists (and is not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="latin-1") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def tail(path):
    """The last lines of a log file, for a failure message."""
    try:
        with open(path, encoding="utf-8", errors="replace") as log:
            return "".join(log.readlines()[-LOG_TAIL_LINES:])
    except OSError as err:
        return f"(no log: {err})\n"


def wait_ready(timeout, specs):
    """Wait for every NAME|PID|PROBE|LOG spec; print each ready time; exit 1 with log tails."""
    start = time.monotonic()
    pending = [spec.split("|", 3) for spec in specs]
    failed = []
    while pending and time.monotonic() - start < timeout:
        still = []
        for name, pid, probe, log in pending:
            if is_ready(probe):
                print(f"    {name:<10} ready after {time.monotonic() - start:5.1f}s", flush=True)
            elif pid and not alive(int(pid)):
                failed.append((name, "exited before it was ready", log))
            else:
                still.append((name, pid, probe, log))
        pending = still
        if pending:
            time.sleep(POLL_SECONDS)
    failed += [(name, f"not ready after {timeout}s", log) for name, _, _, log in pending]
    for name, why, log in failed:
        sys.stderr.write(f"!!! {name} {why}; last lines of {log}:\n{tail(log)}\n")
    sys.exit(1 if failed else 0)


def live_groups(pgids):
    """The process groups among pgids that still have a process that is not a zombie."""
    live = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="latin-1") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) in pgids:
            live.add(int(fields[2]))
    return live


def stop(timeout, specs):
    """Stop every NAME:PID:SIGNAL:SCOPE spec (SCOPE "group" signals the process group PID,
    "leader" only PID); wait up to timeout for the groups to empty, then SIGKILL them."""
    groups = {}
    for spec in specs:
        name, pid, signame, scope = spec.split(":")
        pid = int(pid)
        groups[pid] = name
        try:
            sig = getattr(signal, "SIG" + signame)
            os.killpg(pid, sig) if scope == "group" else os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    live = live_groups(groups)
    while live and time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        live = live_groups(groups)
    for pgid in live:
        print(f"    {groups[pgid]} (pid {pgid}) did not stop in {timeout}s: killed", flush=True)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def moto_bootstrap(endpoint, region):
    """Spend moto's free unauthenticated actions on an allow-all IAM user; print its key.

    Afterwards moto verifies SigV4: the function checks a wrong secret key is refused (403).
    """
    import boto3
    import botocore.exceptions

    def client(service, key_id, secret):
        return boto3.client(service, endpoint_url=endpoint, region_name=region,
                            aws_access_key_id=key_id, aws_secret_access_key=secret)

    iam = client("iam", "bootstrap", "bootstrap")
    iam.create_user(UserName="credchain-test")
    key = iam.create_access_key(UserName="credchain-test")["AccessKey"]
    policy = {"Version": "2012-10-17",
              "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    iam.put_user_policy(UserName="credchain-test", PolicyName="allow-all",
                        PolicyDocument=json.dumps(policy))
    key_id, secret = key["AccessKeyId"], key["SecretAccessKey"]
    client("secretsmanager", key_id, secret).list_secrets()
    try:
        client("secretsmanager", key_id, secret + "x").list_secrets()
    except botocore.exceptions.ClientError as err:
        status = err.response["ResponseMetadata"]["HTTPStatusCode"]
        if status != 403:
            sys.exit(f"moto answered {status}, not 403, to a wrong secret key")
    else:
        sys.exit("moto accepted a wrong secret key: SigV4 verification is off")
    print(f"CREDCHAIN_TEST_AWS_ACCESS_KEY_ID={key_id}")
    print(f"CREDCHAIN_TEST_AWS_SECRET_ACCESS_KEY={secret}")


def main(argv):
    command, args = argv[0], argv[1:]
    if command == "ports":
        free_ports(args)
    elif command == "spawn":
        spawn(args[0], args[1], args[2:])
    elif command == "wait":
        wait_ready(float(args[0]), args[1:])
    elif command == "stop":
        stop(float(args[0]), args[1:])
    elif command == "moto-bootstrap":
        moto_bootstrap(args[0], args[1])
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
