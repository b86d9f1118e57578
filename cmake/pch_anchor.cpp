// Compiled once so that the precompiled header exists for every other target to reuse.
