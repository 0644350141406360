"""The I/O shell: event loop, listeners, timers and group commit around the core."""
