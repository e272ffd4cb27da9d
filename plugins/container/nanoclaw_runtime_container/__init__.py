"""nanoclaw-runtimes ``container`` runtime: ephemeral sandboxes on bubblewrap, Docker,
Podman or Apple's ``container``, one per run, named and labelled so none is lost."""
