"""The Docker runtime adapter: the only code that talks to a container engine."""
