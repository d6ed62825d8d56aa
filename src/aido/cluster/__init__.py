"""Runs on a Ray cluster (`aido run --cluster ADDRESS`): the same pipeline on every node,
every run's sealed evidence verified and stored on the machine that asked.

Only the ``--cluster`` path imports this package's Ray-using modules; plain aido never
imports ray.
"""
