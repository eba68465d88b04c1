"""Scale review 39: a batch stopped by SIGTERM (a scheduler's time limit, `timeout`) and sent a
second one while its pipeline shuts down."""
from __future__ import annotations

import os
import signal

from voxface.cli import sigterm_as_interrupt
from voxface.reconstruct import _sigint_deferred


def test_a_second_sigterm_does_not_cut_the_batch_shutdown_short():
    # reproduced: `voxface reconstruct` on 300 photos, SIGTERM, 0.3 s later SIGTERM again: the second
    # interrupted pool.shutdown, summary.json listed 21 faces while the pipeline processes wrote 27
    # more after it, and the command hung at exit. The shutdown block now ignores SIGTERM as Ctrl-C.
    before_int, before_term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    done = []
    with sigterm_as_interrupt() as terminated:
        handler = signal.getsignal(signal.SIGTERM)
        with _sigint_deferred():
            assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGTERM)  # no KeyboardInterrupt here: the record is written whole
            done.append("summary written")
        assert signal.getsignal(signal.SIGTERM) is handler  # the command's handler is back after the block
        assert terminated == []
    assert done == ["summary written"]
    assert signal.getsignal(signal.SIGINT) is before_int
    assert signal.getsignal(signal.SIGTERM) is before_term
