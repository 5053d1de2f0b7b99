#!/usr/bin/env python3
"""Runs a command with a pseudo-terminal as its stdin and controlling terminal.

Usage: pty_proxy.py COMMAND [ARG...]

The child gets a new session whose controlling terminal is the pty (so the terminal's line
discipline turns a \\x03 byte into a real SIGINT for it, as a keyboard Ctrl-C does, and \\x04 at
the start of a line into end of input). Its stdout and stderr are pipes, relayed to this
process's stdout and stderr unchanged, so a test can tell answers from status lines.
Bytes read from this process's stdin are written to the pty master, as typed keys. What the
terminal echoes is discarded. Exit status: the child's, or 128 + N when signal N killed it.
Used by tests/EdgeLlm.Tests/Cli/ChatCommandTests.cs (edgellm chat).
"""
import fcntl
import os
import pty
import select
import sys
import termios


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: pty_proxy.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    master, slave = pty.openpty()
    # A fresh pty is in canonical mode with ECHO and ISIG on; make sure of the two that matter.
    attrs = termios.tcgetattr(slave)
    attrs[3] |= termios.ISIG | termios.ICANON
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            os.dup2(slave, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            for fd in (master, slave, out_r, out_w, err_r, err_w):
                if fd > 2:
                    os.close(fd)
            os.execvp(sys.argv[1], sys.argv[1:])
        finally:
            os._exit(127)
    os.close(slave)
    os.close(out_w)
    os.close(err_w)

    stdin = sys.stdin.fileno()
    targets = {out_r: sys.stdout.buffer, err_r: sys.stderr.buffer}
    open_fds = [stdin, master, out_r, err_r]
    while out_r in open_fds or err_r in open_fds:
        ready, _, _ = select.select(open_fds, [], [])
        for fd in ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO from the master once the child has closed the terminal
                data = b""
            if not data:
                open_fds.remove(fd)
                continue
            if fd == stdin:
                os.write(master, data)
            elif fd == master:
                pass  # the terminal's echo of what was typed
            else:
                targets[fd].write(data)
                targets[fd].flush()
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main())
