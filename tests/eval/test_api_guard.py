"""A script that calls ``sparkql.run()`` at its top level and then starts a process the way vLLM
starts its engine (the ``spawn`` method, which imports the script again in the new process):
the second call is refused with the fix, `if __name__ == "__main__":`, instead of a second run
that finds the store locked. (The vLLM lane, tests/vllm/, runs the same script with the real
engine.)"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_unguarded_script_is_told_to_guard_its_call(tiny_qwen2, tmp_path):
    script = tmp_path / "unguarded.py"
    script.write_text(textwrap.dedent(f'''
        import multiprocessing
        import sparkql

        STUDY = 'model base = "{tiny_qwen2}"\\neval pass@k on gsm8k with n = 1, max_tokens = 4, examples = 1\\n'
        summary = sparkql.run(STUDY, db={str(tmp_path / "s.duckdb")!r}, dry_run=True, quiet=True)
        print("parent run:", summary.status, flush=True)


        def engine():
            pass


        if multiprocessing.current_process().name == "MainProcess":
            p = multiprocessing.get_context("spawn").Process(target=engine)
            p.start()
            p.join()
            print("child exit code:", p.exitcode, flush=True)
    '''))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "parent run: dry-run" in r.stdout, r.stderr
    assert "child exit code: 1" in r.stdout, r.stdout + r.stderr
    assert 'if __name__ == "__main__":' in r.stderr and "vLLM starts its engine in a new process" in r.stderr
