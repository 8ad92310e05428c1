"""What a notebook kernel uses: the parameters check, batch runs with progress, result views and the ablation
widgets. The top of the package, beside the CLI."""
