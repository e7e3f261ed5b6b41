namespace Babel.UnitTests.Tokenization;

/// <summary>Short real sentences in many scripts, shared by the tokenizer tests.</summary>
internal static class MultilingualSamples
{
    public static readonly string[] Sentences =
    [
        "All human beings are born free and equal in dignity and rights. They are endowed with reason and conscience.",
        "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont doués de raison et de conscience.",
        "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft und Gewissen begabt.",
        "Todos los seres humanos nacen libres e iguales en dignidad y derechos; dotados como están de razón y conciencia.",
        "Все люди рождаются свободными и равными в своем достоинстве и правах. Они наделены разумом и совестью.",
        "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق. وقد وهبوا عقلاً وضميرًا.",
        "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता और समानता प्राप्त है।",
        "সমস্ত মানুষ স্বাধীনভাবে সমান মর্যাদা এবং অধিকার নিয়ে জন্মগ্রহণ করে।",
        "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。",
        "มนุษย์ทั้งหลายเกิดมามีอิสระและเสมอภาคกันในเกียรติศักด์และสิทธิ",
        "Όλοι οι άνθρωποι γεννιούνται ελεύθεροι και ίσοι στην αξιοπρέπεια και τα δικαιώματα.",
        "כל בני האדם נולדו בני חורין ושווים בערכם ובזכויותיהם.",
        "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。",
        "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다.",
        "Tất cả mọi người sinh ra đều được tự do và bình đẳng về nhân phẩm và quyền lợi.",
        "Wszyscy ludzie rodzą się wolni i równi pod względem swej godności i swych praw.",
        "It's 2024: we've got 3,141 items — isn't that 'great'? I'll say we'd done 42%!",
        "Emoji 😀🎉 and symbols ≤ ≥ → ∑ and tabs\tand   multiple   spaces\nnew lines\r\n\n  indented",
    ];

    /// <summary>Texts not in the training corpus, covering scripts, emoji, whitespace runs and newlines.</summary>
    public static readonly string[] Unseen =
    [
        "Ça va très bien, merci — où êtes-vous?",
        "Привет, мир! Съешь же ещё этих мягких французских булок.",
        "مرحبا بالعالم، كيف حالك اليوم؟",
        "नमस्ते दुनिया, आप कैसे हैं?",
        "ওহে বিশ্ব, আপনি কেমন আছেন?",
        "你好，世界！今天天气很好。",
        "สวัสดีชาวโลก วันนี้อากาศดีมาก",
        "👩‍👩‍👧‍👦 family, 🇩🇪 flag, 🤖 robot",
        "   leading spaces, trailing spaces   ",
        "\n\n\tmixed\t \n whitespace \r\n",
        "𠀀𠀁 supplementary Han and 𝒜𝓁𝓅𝒽𝒶 math letters",
        "a",
        " ",
    ];

    /// <summary>A small training corpus: every sentence a few times, so frequent words get merged.</summary>
    public static IEnumerable<string> Corpus(int repeats = 3) =>
        Enumerable.Range(0, repeats).SelectMany(_ => Sentences);
}
