"""The resident helper: a warm process that runs ``run`` command lines for the launcher.

Every chat message starts a new ``nanoclaw-runtimes run``, and a new Python that imports
the dispatcher, the settings machinery and a runtime pays for those imports on each message.
With ``NANOCLAW_RESIDENT=<idle ms>`` set, the launcher (:mod:`.client`) hands its command
line to a helper (:mod:`.server`) that has imported them once:

1. The launcher connects to ``<runs folder>/resident-<key>.sock`` (a folder only this user
   can enter; the key names this interpreter and its ``sys.path``). It sends its argv,
   environment, working folder and umask, and passes its stdin, stdout and stderr as file
   descriptors. Nothing it sends is written to disk.
2. The helper checks the caller's uid (``SO_PEERCRED``) and that none of the modules it
   imported changed on disk since (else it answers "run it yourself" and exits), then forks a
   worker: a copy of a process that has run nothing, so no run sees another's state.
3. The worker takes the caller's descriptors, environment, folder and umask and runs the
   command line as the CLI would, in its own session. It says ``A`` when it starts and
   ``X<status>`` at the end; the launcher exits with that status.
4. The launcher forwards SIGINT, SIGTERM and SIGHUP (a hang-up becomes SIGTERM, so the
   clean-up runs); when the launcher dies, the worker stops the run as for SIGTERM.

Without a helper (none yet, a stale one, a refusal before ``A``) the launcher runs the
command itself, as without ``NANOCLAW_RESIDENT``, and starts a helper for the next one.
The helper exits after the idle period with no run in progress.
"""
