"""JSON-RPC through Rpc/RpcReq (Mongoose's mg_rpc_*)."""

import gc
import json
import weakref

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import cymongoose as cm


def request(method, params=None, id=1):
    frame = {"method": method}
    if params is not None:
        frame["params"] = params
    if id is not None:
        frame["id"] = id
    return json.dumps(frame)


@pytest.fixture
def rpc():
    r = cm.Rpc()

    def add(req):
        params = json.loads(cm.json_get(req.frame, "$.params"))
        req.ok(json.dumps(sum(params)))

    r.add("sum", add)
    return r


def test_success(rpc):
    response = rpc.process(request("sum", [1, 2, 3], id=7))
    assert response == '{"id":7,"result":6}'
    assert json.loads(response) == {"id": 7, "result": 6}


def test_id_is_copied_verbatim(rpc):
    assert rpc.process('{"id": "a-b", "method": "sum", "params": [1]}') == '{"id":"a-b","result":1}'
    assert rpc.process('{"id": {"x": [1]}, "method": "sum", "params": []}') == \
        '{"id":{"x": [1]},"result":0}'


def test_frame_is_data_like(rpc):
    frame = request("sum", [2, 2])
    for value in (frame, frame.encode(), bytearray(frame.encode()), memoryview(frame.encode())):
        assert json.loads(rpc.process(value))["result"] == 4
    with pytest.raises(TypeError):
        rpc.process(None)


def test_error_response():
    rpc = cm.Rpc()
    rpc.add("fail", lambda req: req.err(-32000, 'bad "input" \\ é'))
    response = rpc.process(request("fail", id=3))
    assert json.loads(response) == {
        "id": 3, "error": {"code": -32000, "message": 'bad "input" \\ é'}}
    assert response.startswith('{"id":3,"error":{"code":-32000,"message":')


@settings(max_examples=100, deadline=None)
@given(message=st.text(), code=st.integers(-(2**31), 2**31 - 1), rid=st.integers(0, 2**53))
def test_error_message_round_trips(message, code, rid):
    rpc = cm.Rpc()
    rpc.add("m", lambda req: req.err(code, message))
    assert json.loads(rpc.process(request("m", id=rid))) == {
        "id": rid, "error": {"code": code, "message": message}}


def test_unknown_method(rpc):
    response = rpc.process(request("nope", id=2))
    assert json.loads(response) == {"id": 2, "error": {"code": -32601, "message": "nope not found"}}


def test_notification_gets_no_response():
    rpc = cm.Rpc()
    calls = []

    def record(kind):
        def handler(req):
            calls.append(kind)
            if kind == "ok":
                req.ok("1")
            elif kind == "err":
                req.err(5, "x")
            elif kind == "raise":
                raise ValueError("boom")
        return handler

    for kind in ("ok", "err", "raise", "silent"):
        rpc.add(kind, record(kind))
        assert rpc.process(request(kind, id=None)) == ""
    assert calls == ["ok", "err", "raise", "silent"]


def test_parse_errors():
    rpc = cm.Rpc()
    assert rpc.process("garbage") == '{"error":{"code":-32700,"message":"garbage"}}'
    assert json.loads(rpc.process('{"id": 5}')) == {
        "id": 5, "error": {"code": -32700, "message": '{"id": 5}'}}
    assert json.loads(rpc.process('{"id": 6, "method": 12}'))["error"]["code"] == -32700
    truncated = rpc.process('{"id": 9, "method": "su')
    assert json.loads(truncated)["error"]["code"] == -32700
    assert json.loads(rpc.process(""))["error"] == {"code": -32700, "message": ""}


def test_handler_that_raises():
    rpc = cm.Rpc()

    def boom(req):
        raise KeyError("k")

    def late(req):
        req.ok("true")
        raise RuntimeError("after the response")

    rpc.add("boom", boom)
    rpc.add("late", late)
    assert json.loads(rpc.process(request("boom", id=1))) == {
        "id": 1, "error": {"code": -32603, "message": "'k'"}}
    assert rpc.process(request("late", id=2)) == '{"id":2,"result":true}'


def test_handler_without_response():
    rpc = cm.Rpc()
    rpc.add("quiet", lambda req: None)
    assert json.loads(rpc.process(request("quiet", id=4))) == {
        "id": 4, "error": {"code": -32603, "message": "handler produced no response"}}


def test_later_handler_shadows_older_one():
    rpc = cm.Rpc()
    rpc.add("m", lambda req: req.ok('"old"'))
    assert json.loads(rpc.process(request("m")))["result"] == "old"
    rpc.add("m", lambda req: req.ok('"new"'))
    assert json.loads(rpc.process(request("m")))["result"] == "new"
    assert rpc.methods == ["m", "m"]


def test_glob_patterns_newest_first():
    rpc = cm.Rpc()
    rpc.add("math.*", lambda req: req.ok('"math"'))
    rpc.add("math.add", lambda req: req.ok('"add"'))
    rpc.add("", lambda req: req.ok('"response"'))
    assert rpc.methods == ["math.add", "math.*"]  # empty patterns are not listed
    assert json.loads(rpc.process(request("math.add")))["result"] == "add"
    assert json.loads(rpc.process(request("math.mul")))["result"] == "math"
    assert json.loads(rpc.process(request("Math.mul")))["error"]["code"] == -32601
    # A JSON-RPC response frame goes to the "" pattern.
    assert json.loads(rpc.process('{"id": 1, "result": 5}'))["result"] == "response"


def test_request_is_valid_only_inside_the_handler():
    rpc = cm.Rpc()
    kept = []
    seen = []

    def handler(req):
        kept.append(req)
        seen.append(req.frame)
        req.ok("1")
        with pytest.raises(RuntimeError, match="Response already sent"):
            req.ok("2")
        with pytest.raises(RuntimeError, match="Response already sent"):
            req.err(1, "x")

    rpc.add("m", handler)
    frame = request("m", id=8)
    assert rpc.process(frame) == '{"id":8,"result":1}'
    assert seen == [frame]
    (req,) = kept
    assert req.frame == ""
    with pytest.raises(RuntimeError, match="RpcReq is no longer valid"):
        req.ok("1")
    with pytest.raises(RuntimeError, match="RpcReq is no longer valid"):
        req.err(1, "x")
    fresh = cm.RpcReq()
    assert fresh.frame == ""
    with pytest.raises(RuntimeError, match="RpcReq is no longer valid"):
        fresh.ok("1")


def test_ok_is_verbatim_and_type_checked():
    rpc = cm.Rpc()
    errors = []

    def handler(req):
        for bad in (lambda: req.ok(5), lambda: req.ok(b"1"), lambda: req.err("x", "m"),
                    lambda: req.err(1, None), lambda: req.err(2**40, "m")):
            try:
                bad()
            except (TypeError, OverflowError) as exc:
                errors.append(type(exc))
        req.ok("not json ü")

    rpc.add("m", handler)
    assert rpc.process(request("m", id=1)) == '{"id":1,"result":not json ü}'
    assert errors == [TypeError, TypeError, TypeError, TypeError, OverflowError]


def test_add_needs_str_method():
    rpc = cm.Rpc()
    with pytest.raises(TypeError):
        rpc.add(b"m", lambda req: None)
    with pytest.raises(TypeError):
        rpc.add(None, lambda req: None)
    assert rpc.methods == []


def test_nested_process_from_a_handler(rpc):
    rpc.add("twice", lambda req: req.ok(json.dumps(
        2 * json.loads(rpc.process(request("sum", [1, 2])))["result"])))
    assert json.loads(rpc.process(request("twice")))["result"] == 6


def test_keyboard_interrupt_from_a_handler_is_raised_by_process():
    rpc = cm.Rpc()

    def stop(req):
        raise KeyboardInterrupt

    rpc.add("stop", stop)
    with pytest.raises(KeyboardInterrupt):
        rpc.process(request("stop"))
    rpc.add("ok", lambda req: req.ok("1"))
    assert rpc.process(request("ok")) == '{"id":1,"result":1}'


def test_rpc_objects_are_collected():
    refs = []
    for _ in range(50):
        rpc = cm.Rpc()
        rpc.add("m", lambda req: req.ok("1"))
        rpc.process(request("m"))
        refs.append(weakref.ref(rpc))
    del rpc
    for _ in range(3):
        gc.collect()
    assert all(ref() is None for ref in refs)


def test_large_result():
    rpc = cm.Rpc()
    payload = json.dumps(list(range(200_000)))
    rpc.add("big", lambda req: req.ok(payload))
    assert json.loads(rpc.process(request("big")))["result"] == list(range(200_000))
