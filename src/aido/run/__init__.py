"""One run of a task, as one-way stages: plan -> prepare -> execute -> collect -> result."""
