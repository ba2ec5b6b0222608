"""Code the tests share (never imported from one test module into another): processes and waiting,
the flywheel run as a user runs it, prepared workspaces, numerics, notebooks as git stores them."""
