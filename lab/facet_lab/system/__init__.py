"""The whole system as the main job: every service as its own process, a live view, a report."""
