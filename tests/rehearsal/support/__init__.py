"""Support code of the rehearsal: twins, the interpreter binding, the assembly."""
