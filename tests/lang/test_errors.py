"""A catalogue of bad studies: each is a SparkError whose rendered message (file:line:col, the
source line, a caret under the span, a hint) is snapshotted. And the CLI: exit 2, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sparkql.errors import SparkError

from lang_helpers import compile_in_tree

M = 'model base = "models/Qwen2.5-Math-1.5B-Instruct"\nmodel ckpt = "runs/grpo-math220k/checkpoint-*"\n'
Q3 = 'model qwen3 = "models/Qwen3-8B"\n'

BAD: dict[str, str] = {
    # syntax
    "unknown_statement": "modle base = \"models/x\"\n",
    "unterminated_string": 'model base = "models/Qwen2.5\n',
    "missing_equals": 'model base "models/x"\n',
    "two_statements_one_line": M + "cohort a cohort b\n",
    "bad_character": M + "circuit aime24 on base $\n",
    "metric_typo_character": M + "eval pass@ on aime24\n",
    "unclosed_paren": M + "circuit aime24 on base using eap_ig(steps = 5\n",
    "empty_selector": M + "circuit aime24 on ckpt[] diff base\n",
    "head_literal_malformed": M + "scale heads L5, L7H3 by 0.5 on base\n",
    "eval_missing_dataset_after_on": M + "eval pass@k on with n = 4\n",
    "scale_without_factor": M + "circuit aime24 on ckpt[*] diff base\nscale emergent on base\n",
    "ends_mid_statement": M + "circuit aime24 on",
    "duplicate_clause": M + "circuit aime24 on ckpt[*] diff base as a as b\n",
    # names
    "unknown_model": M + "circuit aime24 on bsae\n",
    "unknown_dataset": M + "circuit aime42 on base as h\n",
    "unknown_head_set": M + "circuit aime24 on ckpt[*] diff base as emergent_grpo\nablate emergent_gpro top 10\n",
    "model_used_as_head_set": M + "ablate base top 3 on base\n",
    "head_set_used_as_model": M + "circuit aime24 on ckpt[*] diff base\ncircuit aime24 on emergent\n",
    "duplicate_model": M + 'model base = "models/Qwen2.5-Math-1.5B"\n',
    "duplicate_head_set": M + "circuit aime24 on ckpt[*] diff base\ncircuit amc on ckpt[*] diff base\n",
    "gpqa_without_path": M + "eval pass@k on gpqa for base\n",
    "unknown_variant_in_for": M + "eval pass@k on aime24 for base, ablated\n",
    # options
    "misspelled_option": M + "circuit aime24 on base using eap_ig(stpes = 5) as h\n",
    "misspelled_setting": M + "set dtyp = fp64\n",
    "wrong_enum_value": M + "set dtype = fp63\n",
    "wrong_type_int": M + "eval pass@k on aime24 with n = 4.5\n",
    "negative_tau": M + "circuit aime24 on base using eap_ig(tau = -1) as h\n",
    "top_p_above_one": M + "eval pass@k on aime24 with top_p = 1.5\n",
    "k_larger_than_n": M + "eval pass@k on aime24 with n = 4, k = [1, 8]\n",
    "option_given_twice": M + "eval pass@k on aime24 with n = 4, n = 8\n",
    "option_in_using_and_with": M + "circuit aime24 on base using eap_ig(steps = 5) as h with steps = 6\n",
    "unknown_method": M + "circuit aime24 on base using eap(steps = 5) as h\n",
    "unknown_metric": M + "eval pass@n on aime24\n",
    "think_not_on_off": M + "think maybe\n",
    "set_think": M + "set think = off\n",
    "cohort_with_options": M + "circuit aime24 on ckpt[*] diff base\ncohort emergent with steps = 3\n",
    "bad_memory_size": M + 'set memory = "lots"\n',
    # vLLM's own limits, caught at compile time when a study asks for backend = vllm
    "vllm_temperature_above_two": M + "set backend = vllm\neval pass@k on aime24 with temperature = 2.5\n",
    "vllm_memory_fraction_above_one": M + "set vllm_memory = 1.5\n",
    "vllm_memory_not_a_size": M + 'set vllm_memory = "lots"\n',
    "string_for_number": M + 'eval pass@k on aime24 with n = "4"\n',
    # selectors
    "index_out_of_range": M + "circuit aime24 on ckpt[7] diff base\n",
    "missing_step": M + "circuit aime24 on ckpt[step=150] diff base\n",
    "empty_slice": M + "circuit aime24 on ckpt[3:1] diff base\n",
    "selector_on_single_model": M + "circuit aime24 on base[-1] as h\n",
    "diff_against_series": M + "circuit aime24 on base diff ckpt\n",
    # files and models
    "empty_glob": 'model ckpt = "runs/empty/checkpoint-*"\n',
    "missing_model_dir": 'model base = "models/nope"\n',
    "missing_hub_model": 'model base = "Qwen/Qwen9-Imaginary"\n',
    "unsupported_architecture": 'model g = "models/gpt2"\n',
    "missing_dataset_file": M + 'dataset d = "data/missing.jsonl"\n',
    "unknown_format": M + 'dataset d = "data/notes.txt"\n',
    "unknown_role": M + 'dataset d = "data/problems.jsonl" (question = "question")\n',
    "missing_field": M + 'dataset d = "data/problems.jsonl" (problem = "prompt", answer = "answer")\n',
    "eval_needs_answers": M + 'dataset pairs = "data/pairs.jsonl" (clean = "clean", corrupt = "corrupt")\neval pass@k on pairs\n',
    "eval_without_any_dataset": M + "eval pass@k for base\n",
    "corrupt_pairs_without_pairs": M + "circuit aime24 on base using eap_ig(corrupt = pairs) as h\n",
    # heads
    "layer_out_of_range": M + "scale heads L28H1 by 0.5 on base\n",
    "head_out_of_range": Q3 + "ablate heads L3H32 on qwen3\n",
    "literal_heads_without_target": M + "ablate heads L1H1\n",
    "mismatched_checkpoints": M + "circuit aime24 on ckpt[0:2] diff base as a\ncircuit aime24 on ckpt[1:3] diff base as b\nheads c = a & b\n",
    "cohort_of_plain_set": M + "circuit aime24 on ckpt[*] as plain\ncohort plain\n",
    "duplicate_variant": M + "circuit aime24 on ckpt[*] diff base\nablate emergent top 3\nablate emergent top 3\n",
    # numbers check used to accept and a run overflowed on (issue 14): every bound is in the message
    "seed_beyond_int64": M + "eval pass@k on aime24 with seed = 100000000000000000000000000\n",
    "seed_beyond_uint32": M + "set seed = 4294967296\n",
    "ig_steps_beyond_bound": M + "circuit aime24 on base using eap_ig(steps = 1000000) as h\n",
    "max_tokens_beyond_bound": M + "eval pass@k on aime24 with max_tokens = 1000000000000\n",
    "max_tokens_beyond_context": 'model small = "models/llama-ctx512"\neval pass@k on aime24 with max_tokens = 1024\n',
    "set_max_tokens_beyond_context": 'model small = "models/llama-ctx512"\nset max_tokens = 600\neval pass@k on aime24\n',
    "circuit_max_tokens_beyond_context": 'model small = "models/llama-ctx512"\n'
                                         "circuit aime24 on small using eap_ig(max_tokens = 513) as h\n",
    "scale_factor_infinite": M + "circuit aime24 on ckpt[*] diff base\nscale emergent by 1e400 on base\n",
    "scale_factor_beyond_bound": M + "circuit aime24 on ckpt[*] diff base\nscale emergent by -1e7 on base\n",
    "head_index_beyond_int32": M + "scale heads L99999999999H1 by 0.5 on base\n",
    "memory_beyond_bound": M + 'set memory = "99999999TiB"\n',
    "circuit_named_like_a_model": M + "circuit aime24 on base as base\n",
    # random-head controls
    "random_without_target": M + "ablate random 3\n",
    "random_more_heads_than_the_model": M + "ablate random 400 on base\n",
    "random_zero_heads": M + "ablate random 0 on base\n",
    "random_without_count": M + "ablate random on base\n",
    "seeds_on_chosen_heads": M + "scale heads L1H1 by 0.5 on base with seeds = 5\n",
    "seeds_zero": M + "ablate random 2 on base with seeds = 0\n",
    "seeds_misspelled": M + "ablate random 2 on base with sedes = 5\n",
    "matching_unknown_set": M + "circuit aime24 on ckpt[*] diff base as emergent_grpo\n"
                                "ablate random matching emergent_gpro top 2\n",
    # selection stability over folds of the pairs (6 rows in data/pairs.jsonl)
    "folds_more_than_pairs": M + 'dataset pairs = "data/pairs.jsonl" (clean = "clean", corrupt = "corrupt")\n'
                             "circuit pairs on ckpt[*] diff base with folds = 7\n",
    "folds_more_than_examples": M + "circuit aime24 on base using eap_ig(examples = 4) as h with folds = 5\n",
    "folds_zero": M + "circuit aime24 on base as h with folds = 0\n",
    "folds_in_using": M + "circuit aime24 on base using eap_ig(folds = 3) as h\n",
    "folds_not_a_number": M + "circuit aime24 on base as h with folds = 2.5\n",
    # data a careless export produces: refused with the file, the row and the field
    "dataset_null_field": M + 'dataset d = "data/null_problem.jsonl"\n',
    "dataset_list_field": M + 'dataset d = "data/list_problem.jsonl"\n',
    "dataset_bool_answer": M + 'dataset d = "data/bool_answer.jsonl"\n',
    "dataset_missing_field_later": M + 'dataset d = "data/missing_answer.jsonl"\n',
    "dataset_binary_field": M + 'dataset d = "data/binary.parquet"\n',
    "dataset_jsonl_in_json": M + 'dataset d = "data/lines.json"\n',
    "dataset_line_not_object": M + 'dataset d = "data/list_line.jsonl"\n',
    "dataset_empty": M + 'dataset d = "data/empty.jsonl"\neval pass@k on d\n',
    "dataset_all_rows_dropped": M + 'dataset d = "data/binary.parquet" with bad_rows = skip\n',
    "dataset_is_a_directory": M + 'dataset d = "data"\n',
    "dataset_is_a_device": M + 'dataset d = "/dev/null"\n',
    "model_is_a_file": 'model m = "data/problems.jsonl"\n',
    # several independent mistakes: every one is reported, each with its caret; a name whose
    # declaration failed is not reported again where it is used
    "several_syntax_errors": M + "modle x = \"y\"\ncircuit aime24 on base as h\neval pass@k on $\nscale h by on base\n",
    "several_name_errors": M + 'model gone = "models/nope"\ncircuit aime24 on gone as g\ncircuit aime42 on base as h\n'
                           "ablate g top 2\neval pass@k on aime24 for bsae\n",
}


def test_catalogue_is_large_enough():
    assert len(BAD) >= 40


@pytest.fixture(autouse=True)
def _hub_cache_in_tree(study_tree, monkeypatch):
    """Hub ids resolve through a cache inside the tree, so messages do not name the real one."""
    monkeypatch.setenv("HF_HUB_CACHE", str(study_tree / "hf-cache"))


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_study_renders_a_located_error(name, study_tree, snapshot):
    with pytest.raises(SparkError) as info:
        compile_in_tree(study_tree, BAD[name], f"{name}.spark")
    err = info.value
    rendered = err.render().replace(str(study_tree), "<tree>").replace(str(Path.cwd()), "<cwd>")
    assert rendered.startswith(f"{name}.spark:"), "every error names the file"
    if err.span is not None:
        assert "^" in rendered, "a located error draws a caret under the span"
    assert rendered == snapshot


def test_cli_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.spark"
    bad.write_text('model base = "nowhere"\ncircuit aime24 on base as h\n')
    r = subprocess.run([sys.executable, "-m", "sparkql.cli.main", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert f"{bad}:1:14: error: model directory \"nowhere\" does not exist" in r.stderr


def test_cli_missing_file_is_a_spark_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sparkql.cli.main", "check", str(tmp_path / "nope.spark")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_cli_check_reports_every_independent_error(tmp_path):
    bad = tmp_path / "bad.spark"
    bad.write_text('modle x = "y"\nmodel base = "nowhere"\ncircuit aime24 on base as h\neval pass@k on $\n')
    r = subprocess.run([sys.executable, "-m", "sparkql.cli.main", "check", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("error:") == 2 and r.stderr.count("^") >= 2 and r.stderr.rstrip().endswith("2 errors")
    r = subprocess.run([sys.executable, "-m", "sparkql.cli.main", "check", "--json", str(bad)], capture_output=True,
                       text=True)
    out = json.loads(r.stdout)
    assert [(e["span"]["line"], e["span"]["column"]) for e in out["error"]["errors"]] == [(1, 1), (4, 16)]
    # once the syntax is right, the name errors are all reported; `h` and `base` are not reported again
    bad.write_text('model base = "nowhere"\ncircuit aime24 on base as h\nablate h top 2\ncircuit aime42 on ckpt as g\n')
    r = subprocess.run([sys.executable, "-m", "sparkql.cli.main", "check", "--json", str(bad)], capture_output=True,
                       text=True)
    errors = json.loads(r.stdout)["error"]["errors"]
    assert [e["message"] for e in errors] == ['model directory "nowhere" does not exist', "unknown dataset `aime42`"]
