Console.WriteLine("babel");
