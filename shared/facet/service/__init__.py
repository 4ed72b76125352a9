"""What every service process shares: HTTP serving, health probes, model (de)serialisation."""
