"""The results store's tables (docs/store.md).

Names and columns listed in docs/store.md are a public contract: users' SQL
relies on them. Add columns beside them, never rename. Bump SCHEMA_VERSION
and add a migration in ``migrations.py`` for every change: a fresh store is
created from :data:`TABLES` (always the latest shape), an older one is
brought up to date by the migrations, and both must end up identical
(``tests/store/test_schema.py`` checks it).

Ids: ``model_id`` is ModelRef.model_id; ``circuit_id``, ``set_key``,
``variant_id`` and ``eval_id`` are the keys of the plan steps that produced
them (content addresses), so the same work in two studies is one row.
"""

SCHEMA_VERSION = 7

TABLES: dict[str, str] = {
    "meta": """
        CREATE TABLE IF NOT EXISTS meta (
            key VARCHAR PRIMARY KEY,
            value VARCHAR
        )""",
    "runs": """
        CREATE TABLE IF NOT EXISTS runs (
            run_id VARCHAR PRIMARY KEY,
            study_path VARCHAR,
            study_text VARCHAR,
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            status VARCHAR,            -- running | done | failed | interrupted
            sparkql_version VARCHAR,
            host VARCHAR,
            pid INTEGER,
            error VARCHAR,             -- v2: why a run failed
            n_steps INTEGER,           -- v2: steps in the plan
            n_cached INTEGER,          -- v2: steps already complete when the run started
            n_done INTEGER             -- v2: steps this run completed
        )""",
    "steps": """
        CREATE TABLE IF NOT EXISTS steps (
            key VARCHAR PRIMARY KEY,   -- content address of the plan step
            kind VARCHAR,
            label VARCHAR,
            run_id VARCHAR,            -- the run that completed it
            completed_at TIMESTAMP,
            seconds DOUBLE,
            summary JSON,
            started_at TIMESTAMP       -- v2
        )""",
    "models": """
        CREATE TABLE IF NOT EXISTS models (
            model_id VARCHAR PRIMARY KEY,
            name VARCHAR,              -- name declared in the study
            label VARCHAR,             -- ckpt[step=200]
            path VARCHAR,
            step INTEGER,              -- checkpoint step, NULL for a single model
            architecture VARCHAR,
            n_layers INTEGER,
            n_heads INTEGER,
            n_kv_heads INTEGER,
            head_dim INTEGER,
            fingerprint VARCHAR,
            dir VARCHAR,               -- v2: resolved local directory (zoo models: the built dir)
            hidden_size INTEGER        -- v2
        )""",
    "circuits": """
        CREATE TABLE IF NOT EXISTS circuits (
            circuit_id VARCHAR PRIMARY KEY,
            model_id VARCHAR,
            dataset VARCHAR,
            method VARCHAR,
            ig_steps INTEGER,
            top_n INTEGER,
            tau DOUBLE,
            metric VARCHAR,
            n_examples INTEGER,        -- pairs actually scored
            n_dropped INTEGER,         -- pairs dropped for unequal token length
            corrupt VARCHAR,
            think BOOLEAN,
            n_edges INTEGER,           -- edges scored
            n_edges_in_circuit INTEGER,
            n_heads_in_circuit INTEGER,
            faithfulness DOUBLE,       -- normalized (docs/eap_ig.md)
            metric_clean DOUBLE,
            metric_corrupt DOUBLE,
            metric_circuit DOUBLE,
            seconds DOUBLE,
            scores_id VARCHAR,         -- v5: the edge scoring this circuit was selected from (scorings)
            dtype VARCHAR,             -- v5: the dtype the scores were computed in (fp32 | bf16 | ...)
            device VARCHAR             -- v5: cpu | cuda
        )""",
    "scorings": """
        CREATE TABLE IF NOT EXISTS scorings (   -- v5: one EAP-IG edge scoring (circuits select from it)
            scores_id VARCHAR PRIMARY KEY,
            model_id VARCHAR,
            dataset VARCHAR,
            method VARCHAR,
            ig_steps INTEGER,
            metric VARCHAR,
            corrupt VARCHAR,
            think BOOLEAN,
            n_examples INTEGER,        -- pairs actually scored
            n_dropped INTEGER,         -- pairs dropped for unequal token length
            n_tokens INTEGER,          -- clean prompt tokens over the scored pairs
            n_edges INTEGER,
            metric_clean DOUBLE,
            metric_corrupt DOUBLE,
            dtype VARCHAR,             -- resolved: fp32 | bf16 | fp16 | fp64
            device VARCHAR,            -- cpu | cuda
            budget_bytes BIGINT,       -- the memory budget the chunks were sized to
            chunk_rows INTEGER,        -- stacked (example, step) rows per chunk (after any halving)
            n_chunks INTEGER,
            peak_bytes BIGINT,         -- measured peak above the model (GPU: allocated; CPU: NULL)
            seconds DOUBLE,
            fold INTEGER,              -- v7: `with folds = K`: the 0-based fold left out (NULL: every pair scored)
            folds INTEGER              -- v7: K
        )""",
    "scored_pairs": """
        CREATE TABLE IF NOT EXISTS scored_pairs (   -- v5: the token pairs a scoring used (circuits measure faithfulness on them)
            scores_id VARCHAR,
            idx INTEGER,               -- example position (0-based)
            clean INTEGER[],           -- token ids, special tokens included
            corrupt INTEGER[],
            target INTEGER,            -- the metric's answer token
            foil INTEGER,              -- logit_diff's wrong token
            row_id VARCHAR             -- v7: the dataset row the pair came from (its `id`, else its position)
        )""",
    "edge_scores": """
        CREATE TABLE IF NOT EXISTS edge_scores (   -- v5: every edge's score of a scoring
            scores_id VARCHAR,
            src VARCHAR,
            dst VARCHAR,
            score DOUBLE
        )""",
    "edges": """
        CREATE TABLE IF NOT EXISTS edges (
            circuit_id VARCHAR,
            src VARCHAR,               -- input | a{l}.h{h} | m{l}
            dst VARCHAR,               -- a{l}.h{h}<q|k|v> | m{l} | logits
            score DOUBLE,
            in_circuit BOOLEAN
        )""",
    "nodes": """
        CREATE TABLE IF NOT EXISTS nodes (
            circuit_id VARCHAR,
            node VARCHAR,              -- input | a{l}.h{h} | m{l} | logits
            layer INTEGER,             -- NULL for input and logits
            head INTEGER,              -- NULL unless kind = 'head'
            kind VARCHAR,              -- input | head | mlp | logits
            score DOUBLE,              -- sum of |score| over kept edges in and out (head score)
            in_circuit BOOLEAN
        )""",
    "head_sets": """
        CREATE TABLE IF NOT EXISTS head_sets (
            set_key VARCHAR,           -- key of the step that produced the set
            set_name VARCHAR,
            model_id VARCHAR,
            layer INTEGER,
            head INTEGER,
            score DOUBLE,
            rank INTEGER,              -- 1 = highest score
            kind VARCHAR,              -- v2: diff (emergent: circuit minus base) | heads
            stability DOUBLE           -- v6: share of a (top_n, tau) grid around the circuit's cutoffs at which
                                       --     the head is in the set (docs/store.md); NULL for set algebra
        )""",
    "fold_heads": """
        CREATE TABLE IF NOT EXISTS fold_heads (   -- v7: selection frequency over folds (`with folds = K`)
            fold_key VARCHAR,          -- key of the step that selected from the folds' scorings
            kind VARCHAR,              -- circuit (the model's circuit) | emergent (circuit minus the base's, fold by fold)
            model_id VARCHAR,
            base_model_id VARCHAR,     -- emergent: the base
            circuit_id VARCHAR,        -- the model's circuit on every pair
            base_circuit_id VARCHAR,   -- emergent: the base's circuit on every pair
            set_key VARCHAR,           -- the head set these heads are (`as NAME` / the diff), NULL if none
            set_name VARCHAR,
            layer INTEGER,
            head INTEGER,
            n_folds INTEGER,           -- folds in which the head is selected
            folds INTEGER,             -- K
            frequency DOUBLE,          -- n_folds / folds
            in_full BOOLEAN            -- selected on every pair (the circuit's or the set's own heads)
        )""",
    "cohort_checkpoints": """
        CREATE TABLE IF NOT EXISTS cohort_checkpoints (
            cohort_key VARCHAR,
            set_name VARCHAR,
            model_id VARCHAR,
            step INTEGER,
            n_active INTEGER,          -- heads of the checkpoint's circuit
            newly_activated INTEGER,   -- emergent heads (in circuit, not in base circuit)
            maintained INTEGER,        -- base circuit heads still in the circuit
            reward DOUBLE,             -- reward (or loss) at this step from trainer_state.json
            idx INTEGER,               -- v2: position in the series (0-based)
            circuit_id VARCHAR,        -- v2: the checkpoint's circuit
            reward_key VARCHAR,        -- v2: log_history key the reward was read from
            n_base INTEGER             -- v2: heads of the base circuit
        )""",
    "cohort_members": """
        CREATE TABLE IF NOT EXISTS cohort_members (   -- v2: the series a cohort step analysed
            cohort_key VARCHAR,
            set_name VARCHAR,
            idx INTEGER,               -- position in the series (0-based)
            model_id VARCHAR,
            step INTEGER,              -- checkpoint step (NULL: unknown, idx is used)
            circuit_id VARCHAR,        -- the checkpoint's circuit
            set_key VARCHAR,           -- the checkpoint's emergent set
            base_model_id VARCHAR,
            base_circuit_id VARCHAR
        )""",
    "cohort_heads": """
        CREATE TABLE IF NOT EXISTS cohort_heads (
            cohort_key VARCHAR,
            set_name VARCHAR,
            layer INTEGER,
            head INTEGER,
            cohort INTEGER,            -- first checkpoint step where the head emerged
            activation_frequency DOUBLE,
            survives BOOLEAN,          -- emergent at the final checkpoint
            origin VARCHAR,            -- v2: emergent | base (base heads: cohort NULL, frequency = share maintained)
            n_active INTEGER           -- v2: checkpoints where the head is in the circuit
        )""",
    "rewards": """
        CREATE TABLE IF NOT EXISTS rewards (
            model_id VARCHAR,          -- the checkpoint whose trainer_state.json was read
            step INTEGER,              -- log_history step
            key VARCHAR,               -- reward, loss, train/reward, ...
            value DOUBLE
        )""",
    "variants": """
        CREATE TABLE IF NOT EXISTS variants (
            variant_id VARCHAR PRIMARY KEY,
            model_id VARCHAR,          -- the model whose weights are edited
            name VARCHAR,              -- ablate emergent top 10
            op VARCHAR,                -- ablate | scale
            factor DOUBLE,
            heads VARCHAR[],           -- ['L5H1', ...]
            n_heads INTEGER,
            top_k INTEGER,             -- v6: K of `top K` (n_heads < top_k: the set had fewer heads)
            control VARCHAR,           -- v6: random control: the control statement's label (NULL: chosen heads)
            draw INTEGER,              -- v6: random control: 0-based draw of `seeds = N`
            matches VARCHAR,           -- v6: `random matching SET`: SET (NULL: `random K`)
            matched VARCHAR[]          -- v6: `random matching SET`: the heads matched, sorted
        )""",
    "evals": """
        CREATE TABLE IF NOT EXISTS evals (
            eval_id VARCHAR PRIMARY KEY,
            model_id VARCHAR,
            variant VARCHAR,           -- intact | variant name
            variant_id VARCHAR,        -- NULL for intact
            dataset VARCHAR,
            n INTEGER,
            temperature DOUBLE,
            top_p DOUBLE,
            top_k INTEGER,
            min_p DOUBLE,
            max_tokens INTEGER,
            seed INTEGER,
            think BOOLEAN,
            backend VARCHAR,
            n_problems INTEGER,
            grader VARCHAR,            -- math | gsm8k | gpqa | triviaqa | exact (how `sparkql regrade` grades)
            extract VARCHAR,           -- v3: strict | lenient, the answer-extraction rule of the samples' grades
            regraded_from VARCHAR,     -- v3: the eval whose completions these are (`sparkql regrade --extract`); NULL when generated
            dtype VARCHAR,             -- v4: the dtype the samples were generated in (auto resolved: fp32 | bf16 | ...)
            canary_agreement DOUBLE,   -- v4: vLLM's greedy canary vs the transformers backend (NULL: not run)
            device VARCHAR             -- v5: cpu | cuda (where the samples were generated)
        )""",
    "samples": """
        CREATE TABLE IF NOT EXISTS samples (
            eval_id VARCHAR,
            problem_id VARCHAR,
            sample_idx INTEGER,
            prompt VARCHAR,            -- the exact text the model was given
            completion VARCHAR,
            finish_reason VARCHAR,     -- stop | length
            n_tokens INTEGER,
            gold VARCHAR,
            extracted VARCHAR,
            status VARCHAR,            -- ok | no_answer | truncated | timeout | error
            correct BOOLEAN,
            PRIMARY KEY (eval_id, problem_id, sample_idx)
        )""",
    "metrics": """
        CREATE TABLE IF NOT EXISTS metrics (
            eval_id VARCHAR,
            metric VARCHAR,            -- pass@k | success@k | accuracy | ok | no_answer | truncated | timeout | error (status shares)
            k INTEGER,
            value DOUBLE,
            stderr DOUBLE
        )""",
}


# Tables whose rows belong to the step that wrote them: the id column holds that step's key.
# Before writing a step's results the executor deletes the rows it wrote before (a step rerun
# after its completion mark was removed), so a rerun never duplicates rows.
OWNER_COLUMNS: dict[str, str] = {
    "circuits": "circuit_id",
    "edges": "circuit_id",
    "nodes": "circuit_id",
    "scorings": "scores_id",
    "edge_scores": "scores_id",
    "scored_pairs": "scores_id",
    "head_sets": "set_key",
    "fold_heads": "fold_key",
    "cohort_members": "cohort_key",
    "cohort_checkpoints": "cohort_key",
    "cohort_heads": "cohort_key",
    "variants": "variant_id",
    "evals": "eval_id",
}

# ART indexes cost on every insert; they pay only for point lookups on small-to-medium
# tables. ``edges`` deliberately has none: rows arrive one circuit at a time, so DuckDB's
# per-row-group min/max (zonemaps) already skip every other circuit on ``circuit_id = ?``.
INDEXES: dict[str, str] = {
    "idx_nodes_circuit": "CREATE INDEX IF NOT EXISTS idx_nodes_circuit ON nodes (circuit_id)",
    "idx_head_sets_key": "CREATE INDEX IF NOT EXISTS idx_head_sets_key ON head_sets (set_key)",
    "idx_rewards_model": "CREATE INDEX IF NOT EXISTS idx_rewards_model ON rewards (model_id)",
    "idx_metrics_eval": "CREATE INDEX IF NOT EXISTS idx_metrics_eval ON metrics (eval_id)",
}

# Views are recreated (CREATE OR REPLACE) every time a writer opens the store, so they are
# always those of this build. The cohort views compute live from ``cohort_members`` and
# ``nodes``; the cohort step materialises the same numbers into ``cohort_checkpoints`` and
# ``cohort_heads`` (computed in Python by sparkql.store.cohorts; a test checks both agree).
# Definitions (docs/store.md, cohorts, paper section 3.2 / figure 2): a head is *active* at a
# checkpoint when it is in that checkpoint's circuit; *newly activated* = active and not in
# the base circuit (the emergent heads); *maintained* = active and in the base circuit.
VIEWS: dict[str, str] = {
    "circuit_heads": """
        CREATE OR REPLACE VIEW circuit_heads AS
        SELECT n.circuit_id, c.model_id, c.dataset, n.layer, n.head,
               'L' || n.layer || 'H' || n.head AS head_name, n.score,
               m.label AS model  -- for reading: sft[step=160]; the ids are for joins
        FROM nodes n LEFT JOIN circuits c USING (circuit_id) LEFT JOIN models m ON m.model_id = c.model_id
        WHERE n.kind = 'head' AND n.in_circuit""",
    "cohort_base_heads": """
        CREATE OR REPLACE VIEW cohort_base_heads AS
        SELECT DISTINCT m.cohort_key, n.layer, n.head
        FROM (SELECT DISTINCT cohort_key, base_circuit_id FROM cohort_members) m
        JOIN nodes n ON n.circuit_id = m.base_circuit_id AND n.kind = 'head' AND n.in_circuit""",
    "cohort_activity": """
        CREATE OR REPLACE VIEW cohort_activity AS
        SELECT m.cohort_key, m.idx, coalesce(m.step, m.idx) AS step, n.layer, n.head,
               (b.layer IS NOT NULL) AS in_base
        FROM cohort_members m
        JOIN nodes n ON n.circuit_id = m.circuit_id AND n.kind = 'head' AND n.in_circuit
        LEFT JOIN cohort_base_heads b
               ON b.cohort_key = m.cohort_key AND b.layer = n.layer AND b.head = n.head""",
    "cohort_checkpoints_live": """
        CREATE OR REPLACE VIEW cohort_checkpoints_live AS
        SELECT m.cohort_key, m.set_name, m.idx, m.model_id, coalesce(m.step, m.idx) AS step,
               m.circuit_id,
               count(a.layer) AS n_active,
               count(a.layer) FILTER (WHERE NOT a.in_base) AS newly_activated,
               count(a.layer) FILTER (WHERE a.in_base) AS maintained,
               (SELECT count(*) FROM cohort_base_heads b WHERE b.cohort_key = m.cohort_key) AS n_base
        FROM cohort_members m
        LEFT JOIN cohort_activity a ON a.cohort_key = m.cohort_key AND a.idx = m.idx
        GROUP BY m.cohort_key, m.set_name, m.idx, m.model_id, m.step, m.circuit_id""",
    "cohort_heads_live": """
        CREATE OR REPLACE VIEW cohort_heads_live AS
        WITH k AS (
            SELECT cohort_key, any_value(set_name) AS set_name, count(*) AS n_checkpoints,
                   max(idx) AS last_idx
            FROM cohort_members GROUP BY cohort_key),
        h AS (
            SELECT cohort_key, layer, head, 'base' AS origin FROM cohort_base_heads
            UNION
            SELECT DISTINCT cohort_key, layer, head, 'emergent' FROM cohort_activity WHERE NOT in_base)
        SELECT h.cohort_key, k.set_name, h.layer, h.head,
               CASE WHEN h.origin = 'emergent' THEN min(a.step) END AS cohort,
               count(a.idx) / k.n_checkpoints AS activation_frequency,
               coalesce(bool_or(a.idx = k.last_idx), false) AS survives,
               h.origin,
               count(a.idx) AS n_active
        FROM h JOIN k USING (cohort_key)
        LEFT JOIN cohort_activity a
               ON a.cohort_key = h.cohort_key AND a.layer = h.layer AND a.head = h.head
        GROUP BY h.cohort_key, k.set_name, h.layer, h.head, h.origin, k.n_checkpoints""",
    "cohort_areas": """
        CREATE OR REPLACE VIEW cohort_areas AS
        -- the stacked areas of figure 2 A: emergent heads active at each checkpoint, by cohort
        SELECT a.cohort_key, a.idx, a.step, h.cohort, count(*) AS n_heads
        FROM cohort_activity a
        JOIN cohort_heads h
          ON h.cohort_key = a.cohort_key AND h.layer = a.layer AND h.head = a.head
         AND h.origin = 'emergent'
        WHERE NOT a.in_base
        GROUP BY a.cohort_key, a.idx, a.step, h.cohort""",
    "cohort_summary": """
        CREATE OR REPLACE VIEW cohort_summary AS
        SELECT c.cohort_key, any_value(c.set_name) AS set_name, count(*) AS n_checkpoints,
               (SELECT count(*) FROM cohort_heads h
                 WHERE h.cohort_key = c.cohort_key AND h.origin = 'emergent') AS n_emergent,
               (SELECT count(*) FROM cohort_heads h
                 WHERE h.cohort_key = c.cohort_key AND h.origin = 'emergent' AND h.survives) AS n_surviving,
               any_value(c.n_base) AS n_base,
               any_value(c.reward_key) AS reward_key,
               -- undefined (fewer than two rewards, or a constant column) is NULL, not DuckDB's NaN
               nullif(corr(c.reward, c.newly_activated), 'nan'::DOUBLE) AS reward_newly_corr
        FROM cohort_checkpoints c GROUP BY c.cohort_key""",
    "reward_curve": """
        CREATE OR REPLACE VIEW reward_curve AS
        SELECT m.name AS series, r.model_id AS read_from, r.step, r.key, r.value,
               m.label AS read_from_label  -- the checkpoint whose trainer_state.json held the entry
        FROM rewards r LEFT JOIN models m USING (model_id)""",
    "scores": """
        CREATE OR REPLACE VIEW scores AS
        -- every metric beside the intact model's value under the same sampling (same model,
        -- dataset, metric, k, n, temperature, top_p, max_tokens, think), and (v6) a chosen
        -- intervention's delta beside its random controls' deltas: the draws of `ablate/scale
        -- random ...` on the same model with the same op, factor and head count (a `matching SET`
        -- control only for an intervention on exactly the heads it matched), evaluated under the same sampling.
        -- beats_controls: share of controls whose delta the intervention's exceeds in its own
        -- direction (lower when the delta is negative, higher when positive; ties do not count).
        WITH s AS (
            SELECT e.eval_id, e.model_id, m.label AS model, e.variant, e.variant_id, e.dataset,
                   e.n, e.temperature, e.top_p, e.max_tokens, e.think,
                   coalesce(e.extract, 'strict') AS extract, e.regraded_from,
                   x.metric, x.k, x.value, x.stderr
            FROM metrics x JOIN evals e USING (eval_id) LEFT JOIN models m USING (model_id)),
        d AS (
            SELECT s.*, i.value AS intact_value, s.value - i.value AS delta,
                   v.op, v.factor, v.n_heads, v.heads, v.control, v.matched
            FROM s LEFT JOIN s i
              ON i.variant = 'intact' AND i.model_id = s.model_id AND i.dataset = s.dataset
             AND i.metric = s.metric AND i.k IS NOT DISTINCT FROM s.k AND i.n = s.n
             AND i.temperature IS NOT DISTINCT FROM s.temperature
             AND i.top_p IS NOT DISTINCT FROM s.top_p
             AND i.max_tokens IS NOT DISTINCT FROM s.max_tokens
             AND i.think IS NOT DISTINCT FROM s.think
             AND i.extract = s.extract  -- a lenient regrade is compared with the lenient intact eval
             AND i.regraded_from IS NULL = s.regraded_from IS NULL
            LEFT JOIN variants v ON v.variant_id = s.variant_id),
        c AS (
            SELECT x.eval_id, x.metric, x.k, count(*) AS controls, avg(y.delta) AS control_mean,
                   stddev_samp(y.delta) AS control_sd,
                   avg(CASE WHEN (x.delta < 0 AND x.delta < y.delta) OR (x.delta > 0 AND x.delta > y.delta)
                            THEN 1.0 ELSE 0.0 END) AS beats_controls
            FROM d x JOIN d y
              ON y.control IS NOT NULL AND x.control IS NULL AND x.variant_id IS NOT NULL
             AND y.model_id = x.model_id AND y.dataset = x.dataset AND y.metric = x.metric
             AND y.k IS NOT DISTINCT FROM x.k AND y.n = x.n
             AND y.temperature IS NOT DISTINCT FROM x.temperature AND y.top_p IS NOT DISTINCT FROM x.top_p
             AND y.max_tokens IS NOT DISTINCT FROM x.max_tokens AND y.think IS NOT DISTINCT FROM x.think
             AND y.extract = x.extract AND y.regraded_from IS NULL = x.regraded_from IS NULL
             AND y.op = x.op AND y.factor = x.factor AND y.n_heads = x.n_heads
             AND (y.matched IS NULL OR y.matched = list_sort(x.heads))
             AND x.delta IS NOT NULL AND y.delta IS NOT NULL
            GROUP BY x.eval_id, x.metric, x.k)
        SELECT d.eval_id, d.model_id, d.model, d.variant, d.dataset, d.metric, d.k,
               d.value, d.stderr, d.intact_value, d.delta, d.extract, d.regraded_from,
               d.control, c.controls, c.control_mean, c.control_sd, c.beats_controls
        FROM d LEFT JOIN c
          ON c.eval_id = d.eval_id AND c.metric = d.metric AND c.k IS NOT DISTINCT FROM d.k""",
    "latest_fold_heads": """
        CREATE OR REPLACE VIEW latest_fold_heads AS
        -- v7: the fold_heads rows of a set's most recently completed fold step (a set run with
        -- folds = 3 and later 5 has both in the store; head_stability shows the latest)
        SELECT f.* FROM fold_heads f LEFT JOIN steps s ON s.key = f.fold_key
        WHERE f.set_key IS NOT NULL
        QUALIFY dense_rank() OVER (PARTITION BY f.set_key ORDER BY s.completed_at DESC NULLS LAST, f.fold_key) = 1""",
    "head_stability": """
        CREATE OR REPLACE VIEW head_stability AS
        -- v6: each head of a circuit's or an emergent set, with the share of a (top_n, tau) grid
        -- around the circuit's cutoffs (top_n +-30% in steps of 10%; tau x 0.5, 1, 2 when > 0)
        -- at which it is in the set (1.0: selected whatever the cutoffs in the band)
        -- v7: fold_stability, the share of `with folds = K` resamples of the pairs in which the head
        -- is in the set (NULL without folds; the latest fold step of the set when several K were run)
        SELECT h.set_key, h.set_name, h.kind, h.model_id, m.label AS model, m.step,
               'L' || h.layer || 'H' || h.head AS head_name, h.layer, h.head, h.score, h.rank, h.stability,
               f.frequency AS fold_stability, f.folds
        FROM head_sets h LEFT JOIN models m USING (model_id)
        LEFT JOIN latest_fold_heads f ON f.set_key = h.set_key AND f.layer = h.layer AND f.head = h.head
        WHERE h.stability IS NOT NULL""",
    "fold_stability": """
        CREATE OR REPLACE VIEW fold_stability AS
        -- v7: every head selected in a fold (or on every pair) of a `with folds = K` circuit, with
        -- the share of the K leave-one-fold-out resamples in which it is in the circuit (kind
        -- circuit) or in the emergent set (kind emergent: fold i of the model minus fold i of the base)
        SELECT f.fold_key, f.kind, f.set_name, f.set_key, f.model_id, m.label AS model, m.step,
               b.label AS base, 'L' || f.layer || 'H' || f.head AS head_name, f.layer, f.head,
               f.n_folds, f.folds, f.frequency, f.in_full, f.circuit_id, f.base_circuit_id
        FROM fold_heads f LEFT JOIN models m USING (model_id) LEFT JOIN models b ON b.model_id = f.base_model_id""",
    "eval_status": """
        CREATE OR REPLACE VIEW eval_status AS
        -- per eval: how many samples ended in each grading status, and how many are correct
        SELECT e.eval_id, m.label AS model, e.variant, e.dataset, coalesce(e.extract, 'strict') AS extract,
               e.regraded_from, count(s.sample_idx) AS samples, count_if(s.correct) AS correct,
               count_if(s.status = 'ok') AS ok, count_if(s.status = 'no_answer') AS no_answer,
               count_if(s.status = 'truncated') AS truncated, count_if(s.status = 'timeout') AS timeout,
               count_if(s.status = 'error') AS error,
               count_if(s.sample_idx IS NOT NULL AND s.status IS NULL) AS ungraded
        FROM evals e LEFT JOIN models m USING (model_id) LEFT JOIN samples s USING (eval_id)
        GROUP BY e.eval_id, m.label, e.variant, e.dataset, e.extract, e.regraded_from""",
}
