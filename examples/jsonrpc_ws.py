"""JSON-RPC over WebSocket: each text message is one request, each reply one message.

    websocat ws://127.0.0.1:8000/rpc
    {"id": 1, "method": "sum", "params": [1, 2, 3]}
"""

import argparse
import json

import cymongoose as cm

rpc = cm.Rpc()


def rpc_sum(req: cm.RpcReq) -> None:
    params = json.loads(cm.json_get(req.frame, "$.params") or "[]")
    req.ok(json.dumps(sum(params)))


def rpc_echo(req: cm.RpcReq) -> None:
    req.ok(cm.json_get(req.frame, "$.params") or "null")


rpc.add("sum", rpc_sum)
rpc.add("echo", rpc_echo)


@cm.handles(cm.MG_EV_HTTP_MSG, cm.MG_EV_WS_MSG)
def handler(conn: cm.Connection, ev: int, data: object) -> None:
    if ev == cm.MG_EV_HTTP_MSG:
        conn.ws_upgrade(data)  # type: ignore[arg-type]
    else:
        response = rpc.process(data.data)  # type: ignore[attr-defined]
        if response:                        # notifications get no reply
            conn.ws_send(response)


def main() -> None:
    parser = argparse.ArgumentParser(description="JSON-RPC over WebSocket example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on ws://%s:%d/rpc" % (host, port), flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
