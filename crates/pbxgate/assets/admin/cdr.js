// The cdr page's script.
