"""`python -m tinyprop` and the `tinyprop` command.

Until the command line is imported, Ctrl-C and SIGTERM are noted, not raised, so that even
in the first moments they end the command with its one-line `stopped`, not a traceback. A command
started with Ctrl-C ignored (a shell script's background job) keeps ignoring it.
"""
import os
import signal
import sys

AGAIN_AFTER = 0.01  # seconds: long enough to be out of the callback that dropped the interrupt


def raise_again(unraisable):
    """sys.unraisablehook: a Ctrl-C that lands in a ctypes callback (Numba's compiler runs some) would be
    printed with a traceback and dropped; a timer raises it again once the callback has returned."""
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        signal.setitimer(signal.ITIMER_REAL, AGAIN_AFTER)
    else:
        sys.__unraisablehook__(unraisable)


def run():
    pending = []
    # a shell starts its background jobs with Ctrl-C ignored, so that it stops only the foreground: keep it so
    interruptible = signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
    for signum in (signal.SIGINT, signal.SIGTERM) if interruptible else (signal.SIGTERM,):
        signal.signal(signum, lambda signum, frame: pending.append(signum))
    from tinyprop import cli
    if interruptible:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: cli.stop(signum))
    signal.signal(signal.SIGALRM, lambda signum, frame: cli.stop(cli.stop.signum))  # raise_again's timer
    sys.unraisablehook = raise_again
    try:
        if pending:
            cli.stop.signum = pending[0]
            cli.stopped(KeyboardInterrupt())
        cli.main(prog_name="tinyprop")
    except SystemExit as stop:
        if stop.code not in (128 + signal.SIGINT, 128 + signal.SIGTERM):
            for signum in (signal.SIGINT, signal.SIGTERM):  # the command is done: let it end as it says
                signal.signal(signum, signal.SIG_IGN)
            raise
        # stopped: leave without the interpreter's clean-up, whose finalizers of LLVM objects that an interrupt
        # left half-made in Numba's compiler can crash (seen: SIGSEGV after the `stopped` line); every file
        # the run wrote is closed
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(stop.code)


if __name__ == "__main__":
    run()
