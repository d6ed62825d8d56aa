"""Host-side handling of the trees a sandbox holds: inputs copied in, the disk-quota volume,
disk usage, clearing work/ and outputs/. Everything here treats task-written trees as hostile."""
