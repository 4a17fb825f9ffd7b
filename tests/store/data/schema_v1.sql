-- The store schema as released at version 1 (sparkql/store/schema.py at commit 510b2a7),
-- for tests/store/test_store.py: a v1 store must migrate to exactly the shape of a fresh store.
CREATE TABLE IF NOT EXISTS meta (
            key VARCHAR PRIMARY KEY,
            value VARCHAR
        );
CREATE TABLE IF NOT EXISTS runs (
            run_id VARCHAR PRIMARY KEY,
            study_path VARCHAR,
            study_text VARCHAR,
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            status VARCHAR,            -- running | done | failed | interrupted
            sparkql_version VARCHAR,
            host VARCHAR,
            pid INTEGER
        );
CREATE TABLE IF NOT EXISTS steps (
            key VARCHAR PRIMARY KEY,   -- content address of the plan step
            kind VARCHAR,
            label VARCHAR,
            run_id VARCHAR,            -- the run that completed it
            completed_at TIMESTAMP,
            seconds DOUBLE,
            summary JSON
        );
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
            fingerprint VARCHAR
        );
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
            faithfulness DOUBLE,       -- normalized (DESIGN.md 4.4)
            metric_clean DOUBLE,
            metric_corrupt DOUBLE,
            metric_circuit DOUBLE,
            seconds DOUBLE
        );
CREATE TABLE IF NOT EXISTS edges (
            circuit_id VARCHAR,
            src VARCHAR,               -- input | a{l}.h{h} | m{l}
            dst VARCHAR,               -- a{l}.h{h}<q|k|v> | m{l} | logits
            score DOUBLE,
            in_circuit BOOLEAN
        );
CREATE TABLE IF NOT EXISTS nodes (
            circuit_id VARCHAR,
            node VARCHAR,              -- input | a{l}.h{h} | m{l} | logits
            layer INTEGER,             -- NULL for input and logits
            head INTEGER,              -- NULL unless kind = 'head'
            kind VARCHAR,              -- input | head | mlp | logits
            score DOUBLE,              -- sum of |score| over kept edges in and out (head score)
            in_circuit BOOLEAN
        );
CREATE TABLE IF NOT EXISTS head_sets (
            set_key VARCHAR,           -- key of the step that produced the set
            set_name VARCHAR,
            model_id VARCHAR,
            layer INTEGER,
            head INTEGER,
            score DOUBLE,
            rank INTEGER               -- 1 = highest score
        );
CREATE TABLE IF NOT EXISTS cohort_checkpoints (
            cohort_key VARCHAR,
            set_name VARCHAR,
            model_id VARCHAR,
            step INTEGER,
            n_active INTEGER,          -- heads of the checkpoint's circuit
            newly_activated INTEGER,   -- emergent heads (in circuit, not in base circuit)
            maintained INTEGER,        -- base circuit heads still in the circuit
            reward DOUBLE              -- reward (or loss) at this step from trainer_state.json
        );
CREATE TABLE IF NOT EXISTS cohort_heads (
            cohort_key VARCHAR,
            set_name VARCHAR,
            layer INTEGER,
            head INTEGER,
            cohort INTEGER,            -- first checkpoint step where the head emerged
            activation_frequency DOUBLE,
            survives BOOLEAN           -- emergent at the final checkpoint
        );
CREATE TABLE IF NOT EXISTS rewards (
            model_id VARCHAR,          -- the checkpoint whose trainer_state.json was read
            step INTEGER,              -- log_history step
            key VARCHAR,               -- reward, loss, train/reward, ...
            value DOUBLE
        );
CREATE TABLE IF NOT EXISTS variants (
            variant_id VARCHAR PRIMARY KEY,
            model_id VARCHAR,          -- the model whose weights are edited
            name VARCHAR,              -- ablate emergent top 10
            op VARCHAR,                -- ablate | scale
            factor DOUBLE,
            heads VARCHAR[],           -- ['L5H1', ...]
            n_heads INTEGER
        );
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
            n_problems INTEGER
        );
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
        );
CREATE TABLE IF NOT EXISTS metrics (
            eval_id VARCHAR,
            metric VARCHAR,            -- pass@k | success@k | accuracy
            k INTEGER,
            value DOUBLE,
            stderr DOUBLE
        );
INSERT INTO meta VALUES ('schema_version', '1');
