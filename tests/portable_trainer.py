"""train.py's main(argv), run after run in one interpreter, for the parity tests (train_helpers.portable_run).

Started by train_helpers under PORTABLE_NUMERICS, which torch reads when it is imported, so the imports (~3 s of
CPU) are paid once for all the parity runs, not once per run. Input: one JSON line per run, {"argv": [...],
"log": path}; the run's stdout and stderr, its loader workers' included, go to `log` (file descriptors 1 and 2);
the answer is one JSON line, {"code": exit code}, on the descriptor that was stdout at start. The end of the input
ends it.
"""
import json
import os
import sys
import traceback

answers = os.fdopen(os.dup(1), 'w')

from train_helpers import main_in_process  # noqa: E402  (tests/ is this script's folder, first on sys.path)

for line in sys.stdin:
    request = json.loads(line)
    saved = os.dup(1), os.dup(2)
    with open(request['log'], 'w') as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            code = main_in_process(*request['argv'])
        except Exception:   # the test reads the traceback from the log
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    answers.write(json.dumps({'code': code}) + '\n')
    answers.flush()
