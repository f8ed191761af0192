"""Network building blocks shared by several methods (imports only torch)."""
