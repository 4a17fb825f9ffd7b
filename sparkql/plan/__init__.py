"""The plan: a DAG of typed, content-addressed steps (the compiler's output, the runtime's input)."""
