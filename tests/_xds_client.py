"""A stock gRPC C-core client (Debian's python3-grpcio), run as its own process by xds_test.ts.

No code of ours picks: the channel targets xds:///<service> and GRPC_XDS_BOOTSTRAP_CONFIG names
the balancer. It sends ProcessTask calls, <concurrency> at a time, until stdin closes, and
prints one JSON line per 100 ms, as _xds_client.ts does: the calls each server answered in it
(from "done by <address>"), those that failed, by status, and how many it retried itself.

The messages are two string fields each, encoded here by hand: Debian ships grpcio without the
protobuf compiler.

Usage: _xds_client.py <service> <concurrency> <SIMPLE|CPU_HEAVY> [header=value]
"""

import json
import re
import sys
import threading
import time

import grpc

BUCKET_S = 0.1
METHOD = "/load_balancer.Backend/ProcessTask"


def string_field(number, text):
    data = text.encode()
    return bytes([number << 3 | 2, len(data)]) + data


def task_request(task_id, task_type):
    return string_field(1, task_id) + string_field(2, task_type)


def result_of(response):
    # TaskResponse: field 1 (result), a string of fewer than 16,384 bytes.
    length, start = response[1], 2
    if length & 0x80:
        length, start = (length & 0x7F) | (response[2] << 7), 3
    return response[start:start + length].decode()


def main():
    service, concurrency, task_type = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    metadata = [tuple(sys.argv[4].split("=", 1))] if len(sys.argv) > 4 else []
    channel = grpc.insecure_channel(f"xds:///{service}")
    call = channel.unary_unary(METHOD)
    lock = threading.Lock()
    counts = {"servers": {}, "failed": {}, "retried": 0}
    told = set()
    stopping = threading.Event()
    started = time.monotonic()

    def flush():
        with lock:
            line = {"t": round(time.monotonic() - started, 3), **counts}
            counts["servers"], counts["failed"], counts["retried"] = {}, {}, 0
        print(json.dumps(line), flush=True)

    def ticker():
        while not stopping.wait(BUCKET_S):
            flush()

    def worker(index):
        sent = 0
        while not stopping.is_set():
            sent += 1
            try:
                request = task_request(f"p{index}-{sent}", task_type)
                try:
                    response = call(request, timeout=5, metadata=metadata)
                except grpc.RpcError as error:
                    # gRPC's retry policy (the route's) retries a call only until a server
                    # answered it; one cut after that is retried here once, as callers do.
                    if error.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    with lock:
                        counts["retried"] += 1
                    response = call(request, timeout=5, metadata=metadata)
                # "done by <address>", then ": <work>" for CPU_HEAVY.
                match = re.search(r"done by (\S+?)(?::? |$)", result_of(response))
                server = match.group(1) if match else "?"
                with lock:
                    counts["servers"][server] = counts["servers"].get(server, 0) + 1
            except grpc.RpcError as error:
                code = error.code().name
                with lock:
                    if code not in told:  # the first of each code, for the test's message
                        told.add(code)
                        print(f"failed {code}: {error.details()}", file=sys.stderr, flush=True)
                    counts["failed"][code] = counts["failed"].get(code, 0) + 1
                time.sleep(0.01)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    tick = threading.Thread(target=ticker)
    for thread in threads + [tick]:
        thread.start()
    sys.stdin.read()  # runs until the test closes stdin
    stopping.set()
    for thread in threads + [tick]:
        thread.join()
    flush()
    channel.close()


if __name__ == "__main__":
    main()
