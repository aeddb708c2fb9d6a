"""REST JSON API: an in-memory collection of notes.

    GET    /api/notes          list
    POST   /api/notes          create   {"text": "..."}
    GET    /api/notes/<id>     read
    DELETE /api/notes/<id>     delete
"""

import argparse
import json
from typing import Dict

import cymongoose as cm

notes: Dict[int, dict] = {}
next_id = 1


@cm.handles(cm.MG_EV_HTTP_MSG)
def handler(conn: cm.Connection, ev: int, msg: cm.HttpMessage) -> None:
    global next_id
    ok, caps = cm.match(msg.uri, "/api/notes/*")  # one capture per wildcard
    if msg.uri == "/api/notes" and msg.method == "GET":
        conn.reply_json(list(notes.values()))
    elif msg.uri == "/api/notes" and msg.method == "POST":
        try:
            text = json.loads(msg.body_bytes)["text"]
        except (ValueError, KeyError, TypeError):
            conn.reply_json({"error": "expected {\"text\": ...}"}, 400)
            return
        note = {"id": next_id, "text": text}
        notes[next_id] = note
        next_id += 1
        conn.reply_json(note, 201)
    elif ok and caps[0].isdigit() and int(caps[0]) in notes:
        note_id = int(caps[0])
        if msg.method == "GET":
            conn.reply_json(notes[note_id])
        elif msg.method == "DELETE":
            del notes[note_id]
            conn.reply(204, "")
        else:
            conn.reply_json({"error": "method not allowed"}, 405)
    else:
        conn.reply_json({"error": "not found"}, 404)


def main() -> None:
    parser = argparse.ArgumentParser(description="REST JSON API example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    args = parser.parse_args()
    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on http://%s:%d/api/notes" % (host, port), flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
