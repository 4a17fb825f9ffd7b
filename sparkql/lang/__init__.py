"""The .spark language: grammar -> AST -> resolved Study. Never imports torch."""
