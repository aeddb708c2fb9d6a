"""File upload: multipart/form-data parsed with http_parse_multipart, saved to a directory.

    python examples/file_upload.py --dir /tmp/uploads
    curl -F file=@photo.jpg http://127.0.0.1:8000/upload

Bodies up to Mongoose's receive limit are buffered whole before MG_EV_HTTP_MSG.
"""

import argparse
import os

import cymongoose as cm


def main() -> None:
    parser = argparse.ArgumentParser(description="file upload example")
    parser.add_argument("--listen", default="http://127.0.0.1:8000")
    parser.add_argument("--dir", default="uploads")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    @cm.handles(cm.MG_EV_HTTP_MSG)
    def handler(conn: cm.Connection, ev: int, msg: cm.HttpMessage) -> None:
        if msg.uri != "/upload" or msg.method != "POST":
            conn.reply(200, '<form method="POST" action="/upload" enctype="multipart/form-data">'
                            '<input type="file" name="file"><button>Upload</button></form>',
                       {"Content-Type": "text/html"})
            return
        body = msg.body_bytes  # copy once; the view dies when the handler returns
        saved = []
        offset = 0
        while True:
            offset, part = cm.http_parse_multipart(body, offset)
            if part is None:
                break
            if part["filename"]:
                name = os.path.basename(part["filename"])  # never trust client paths
                with open(os.path.join(args.dir, name), "wb") as f:
                    f.write(part["body"])
                saved.append({"name": name, "size": len(part["body"])})
        conn.reply_json({"saved": saved})

    mgr = cm.Manager(handler)
    listener = mgr.listen(args.listen)
    host, port = cm.url_host(args.listen), listener.local_addr[1]  # port 0: the one picked
    print("Listening on http://%s:%d/upload" % (host, port), flush=True)
    mgr.run()


if __name__ == "__main__":
    main()
