@_exported import UnCLIPNN
