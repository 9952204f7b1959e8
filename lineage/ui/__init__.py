"""ui: the terminal (cli, output), the HTML report, the generated docs and the demo."""
