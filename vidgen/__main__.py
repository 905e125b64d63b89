from vidgen.cli import app

app(prog_name="vidgen")
