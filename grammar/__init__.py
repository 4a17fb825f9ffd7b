"""Package data: spark.lark, the grammar of the .spark language."""
