import ArgumentParser
import UnCLIPModels
print("unclip")
