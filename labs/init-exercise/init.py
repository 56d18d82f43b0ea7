#!/usr/bin/python3
"""A container init, to finish. Run the checks with

    ./kpc lab init-exercise --init labs/init-exercise/init.py     (or your copy)

It is started as `init.py COMMAND ARGS...` and must run COMMAND as its
child and do a container init's duties. As given, it only runs the command
and passes its exit code on: stage 1 passes, stage 2 names the next step.
The stages (labs/init-exercise/checks.toml), easy to hard:

  1. exit with the workload's exit code
  2. exit 128+N when the workload is killed by signal N
  3-5. start the workload clean: nothing blocked, nothing ignored, nothing
     else inherited from this init (Python ignores SIGPIPE and SIGXFSZ!)
  6-7. forward SIGTERM, SIGINT, SIGHUP and SIGUSR1 to the workload only
  8. adopt and reap orphans (a child subreaper)
  9. let the workload survive the init's SIGKILL
  10. all of it as PID 1 of a PID namespace
"""

import os
import sys


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        sys.exit("usage: init.py COMMAND [ARGS...]")
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    _, status = os.waitpid(pid, 0)
    if os.WIFEXITED(status):
        sys.exit(os.WEXITSTATUS(status))
    sys.exit(1)  # TODO (stage 2): a workload killed by signal N


if __name__ == "__main__":
    main()
