"""Evidence: what ran, what it printed, what it changed. Built only from run outcomes
and from files read host-side with symlink-safe calls; never from the engine directly,
and never from anything the task wrote about itself."""
