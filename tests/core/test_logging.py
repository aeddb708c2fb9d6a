"""Mongoose's log lines reach the Python logger "cymongoose", never stdout."""

import logging
import os
import select
import socket

import pytest

import cymongoose as cm
from support.loop import poll_until


@pytest.fixture
def mg_level():
    """Set Mongoose's log level for one test; restore it afterwards."""
    old = cm.log_get()
    yield cm.log_set
    cm.log_set(old)


def records_from(caplog, text):
    return [r for r in caplog.records if r.name == "cymongoose" and text in r.getMessage()]


def test_import_leaves_mongoose_silent():
    assert cm.log_get() == cm.MG_LL_NONE


def test_debug_line_reaches_caplog(caplog, mg_level):
    caplog.set_level(logging.DEBUG, logger="cymongoose")
    mg_level(cm.MG_LL_DEBUG)
    with cm.Manager() as mgr:
        url = "tcp://127.0.0.1:0"
        mgr.listen(url)
    (record,) = records_from(caplog, url)
    assert record.levelno == logging.DEBUG
    assert record.funcName == "mg_listen"
    assert record.pathname == "mongoose.c" and record.lineno > 0
    assert record.getMessage().endswith(url)
    assert "\r" not in record.getMessage() and "\n" not in record.getMessage()


def test_levels_map_to_logging_levels(caplog, mg_level):
    caplog.set_level(1, logger="cymongoose")
    mg_level(cm.MG_LL_VERBOSE)
    with cm.Manager() as mgr:
        lsn = mgr.listen("tcp://127.0.0.1:0")
        with pytest.raises(RuntimeError):
            mgr.listen("tcp://127.0.0.1:%d" % lsn.local_addr[1])  # port in use
        mgr.poll(0)
    levels = {r.levelno for r in caplog.records if r.name == "cymongoose"}
    assert {logging.ERROR, logging.DEBUG, 5} <= levels
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert any("Failed" in r.getMessage() for r in failed)


def test_mongoose_level_gates_lines(caplog, mg_level):
    caplog.set_level(logging.DEBUG, logger="cymongoose")
    mg_level(cm.MG_LL_ERROR)
    with cm.Manager() as mgr:
        mgr.listen("tcp://127.0.0.1:0")
    assert records_from(caplog, "tcp://127.0.0.1:0") == []


def test_python_level_filters_lines(caplog, mg_level):
    caplog.set_level(logging.INFO, logger="cymongoose")
    mg_level(cm.MG_LL_DEBUG)
    with cm.Manager() as mgr:
        mgr.listen("tcp://127.0.0.1:0")
    assert records_from(caplog, "tcp://127.0.0.1:0") == []


def send_garbage_request(mgr, port):
    closed = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"\x01\x02 NOT HTTP \xff\r\n\r\n")

        def peer_closed():
            s.settimeout(0.001)
            try:
                closed.append(s.recv(100) == b"")
            except socket.timeout:
                pass
            return closed

        poll_until(mgr, peer_closed)


def test_bad_request_hexdump_never_reaches_stdout(capfd, caplog, mg_level):
    # Spec 10a: Mongoose hexdumps unparsable requests even at MG_LL_NONE.
    caplog.set_level(logging.DEBUG, logger="cymongoose")
    mg_level(cm.MG_LL_NONE)
    with cm.Manager() as mgr:
        port = mgr.listen("http://127.0.0.1:0").local_addr[1]
        for _ in range(3):
            send_garbage_request(mgr, port)
    out, _ = capfd.readouterr()
    assert out == ""
    # Only our own line per request (the listener's 400), none of Mongoose's.
    lines = [r.getMessage() for r in caplog.records if r.name == "cymongoose"]
    assert len(lines) == 3 and all(m.startswith("HTTP request malformed (400)") for m in lines)


def test_bad_request_hexdump_continues_the_error_line(capfd, caplog, mg_level):
    caplog.set_level(logging.DEBUG, logger="cymongoose")
    mg_level(cm.MG_LL_ERROR)
    with cm.Manager() as mgr:
        port = mgr.listen("http://127.0.0.1:0").local_addr[1]
        send_garbage_request(mgr, port)
    assert capfd.readouterr().out == ""
    (parse,) = records_from(caplog, "HTTP parse")
    (dump,) = records_from(caplog, "NOT HTTP")
    assert parse.levelno == dump.levelno == logging.ERROR
    assert dump.funcName == parse.funcName
    assert dump.getMessage().startswith("0000   01 02 20")


def test_a_failing_log_handler_does_not_break_the_loop(capfd, mg_level):
    class Exploding(logging.Handler):
        def emit(self, record):
            raise ValueError("handler failed")

    handler = Exploding()
    logger = logging.getLogger("cymongoose")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.DEBUG)
    mg_level(cm.MG_LL_DEBUG)
    try:
        with cm.Manager() as mgr:
            lsn = mgr.listen("tcp://127.0.0.1:0")
            mgr.poll(0)
            assert lsn.is_listening
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    assert "ValueError: handler failed" in capfd.readouterr().err


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="a Linux scheduling policy")
def test_the_log_writer_thread_runs_under_sched_batch():
    # Woken with each record, it must not preempt the poll thread that logged it.
    from cymongoose._log_writer import _DroppingQueueHandler

    r, w = os.pipe()
    handler = _DroppingQueueHandler(w)
    try:
        handler.emit(logging.makeLogRecord({"msg": "written by the writer thread"}))
        assert select.select([r], [], [], 10)[0] == [r]
        assert b"written by the writer thread" in os.read(r, 4096)
        assert os.sched_getscheduler(handler._writer.native_id) == os.SCHED_BATCH
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
    finally:
        handler.close()
        os.close(r)
        os.close(w)
