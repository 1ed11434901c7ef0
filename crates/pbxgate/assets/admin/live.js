// The live page's script.
