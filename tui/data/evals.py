"""Queries of the evals tab: intact vs variant scores with each eval's grading statuses, and
the eval a variant is compared with."""

from __future__ import annotations

import duckdb

from sparkql.tui.data.common import ALL_RUNS, MODEL_LABEL, Table, query_table, study_scope


STATUS_METRICS = ("ok", "no_answer", "truncated", "timeout", "error")
"""Grading statuses: the evals tab shows each eval's counts in a column of their own, so their
share rows in ``metrics`` are left out of the metric rows."""


def eval_table(con: duckdb.DuckDBPyConnection, run_id: str = ALL_RUNS) -> Table:
    """Intact vs variant: one row per eval and metric, with the change from intact, and the
    eval's count of samples in each grading status.

    The intact row is the eval of the same model and dataset with variant 'intact' (and the
    same n, think setting and answer-extraction rule, and a regraded copy with a regraded copy,
    so like is compared with like). An eval graded with ``extract = lenient`` shows as
    ``VARIANT @lenient``.
    """
    pred, params = study_scope(run_id)
    # v6 stores: a chosen intervention's random controls (the scores view's columns); an older
    # store, or one without controls, shows no such column
    has = con.execute("SELECT count(*) FROM duckdb_columns() WHERE table_name = 'scores' "
                      "AND column_name = 'beats_controls'").fetchall()[0][0]
    has = has and con.execute("SELECT count(*) FROM variants WHERE control IS NOT NULL").fetchall()[0][0]
    if has:
        controls = "sc.controls, sc.control_mean, sc.beats_controls"
        join = ("\n            LEFT JOIN scores sc ON sc.eval_id = mx.eval_id AND sc.metric = mx.metric "
                "AND sc.k IS NOT DISTINCT FROM mx.kk")
    else:
        controls, join = "NULL AS controls, NULL AS control_mean, NULL AS beats_controls", ""
    statuses = ", ".join(f"count_if(status = '{s}') AS {s}" for s in STATUS_METRICS)
    skip = ", ".join(f"'{s}'" for s in STATUS_METRICS)
    return query_table(
        con,
        f"""WITH e AS (SELECT *, eval_id AS k, coalesce(variant, 'intact') AS v,
                              coalesce(extract, 'strict') AS x FROM evals),
                mx AS (
                    SELECT e.eval_id, e.model_id, e.dataset, e.n, e.think, e.v, e.x, e.regraded_from AS rf,
                           mt.metric, mt.k AS kk, mt.value, mt.stderr
                    FROM e JOIN metrics mt USING (eval_id) WHERE {pred} AND mt.metric NOT IN ({skip})),
                st AS (SELECT eval_id, {statuses} FROM samples GROUP BY eval_id)
            SELECT mx.dataset, {MODEL_LABEL.format(col='mx.model_id')} AS model,
                   {controls},
                   CASE WHEN mx.x = 'strict' THEN mx.v ELSE mx.v || ' @' || mx.x END AS variant,
                   CASE WHEN mx.kk IS NULL THEN mx.metric ELSE replace(mx.metric, '@k', '@' || mx.kk) END AS metric,
                   mx.value, mx.stderr,
                   CASE WHEN mx.v = 'intact' THEN NULL ELSE mx.value - i.value END AS delta,
                   mx.eval_id, {", ".join(f"st.{s}" for s in STATUS_METRICS)}
            FROM mx LEFT JOIN models m ON m.model_id = mx.model_id
            LEFT JOIN st ON st.eval_id = mx.eval_id{join}
            LEFT JOIN (SELECT e.model_id, e.dataset, e.n, e.think, e.x, e.regraded_from AS rf, mt.metric, mt.k, mt.value
                       FROM e JOIN metrics mt USING (eval_id) WHERE e.v = 'intact') i
              ON i.model_id = mx.model_id AND i.dataset IS NOT DISTINCT FROM mx.dataset AND i.n IS NOT DISTINCT FROM mx.n
                 AND i.think IS NOT DISTINCT FROM mx.think AND i.x = mx.x AND (i.rf IS NULL) = (mx.rf IS NULL)
                 AND i.metric = mx.metric AND i.k IS NOT DISTINCT FROM mx.kk
            ORDER BY mx.dataset, model, mx.metric, mx.kk NULLS FIRST, mx.v <> 'intact', mx.v, mx.x""",
        params,
    )


def intact_counterpart(con: duckdb.DuckDBPyConnection, eval_id: str) -> str | None:
    """The intact eval of the same model, dataset, n, think setting and extraction rule."""
    row = con.execute(
        """SELECT i.eval_id FROM evals e JOIN evals i
             ON i.model_id = e.model_id AND i.dataset IS NOT DISTINCT FROM e.dataset
            AND i.n IS NOT DISTINCT FROM e.n AND i.think IS NOT DISTINCT FROM e.think
            AND coalesce(i.extract, 'strict') = coalesce(e.extract, 'strict')
           WHERE e.eval_id = ? AND coalesce(i.variant, 'intact') = 'intact' AND i.eval_id <> e.eval_id
           ORDER BY i.eval_id LIMIT 1""",
        [eval_id],
    ).fetchone()
    return row[0] if row else None


def eval_label(con: duckdb.DuckDBPyConnection, eval_id: str) -> str:
    row = con.execute(
        f"""SELECT {MODEL_LABEL.format(col='e.model_id')} || ' · ' || coalesce(e.variant, 'intact') || ' · ' || coalesce(e.dataset, '?')
            FROM evals e LEFT JOIN models m USING (model_id) WHERE e.eval_id = ?""",
        [eval_id],
    ).fetchone()
    return row[0] if row else eval_id
