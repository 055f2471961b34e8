import UnCLIPCLI

UnCLIPCommand.main()
