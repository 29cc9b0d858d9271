"""Write the demo dimension registry (`deploy/dimensions.toml`) for the generated population.

`python -m pipeline.traffic.dimensions > deploy/dimensions.toml` regenerates the committed file. Deterministic
(no RNG): creator i, agency k and merchant m of `pipeline.traffic.population` get fixed Chinese names, so the
demo's boards show names. It covers the demo's default cast (150 creators, 500 rooms) with room to
spare; ids beyond it stay unknown and rank under their id, as real unknown ids would.
"""

from __future__ import annotations

import sys
from datetime import date

from pipeline.traffic.population import (
    CATEGORIES,
    CREATOR_BASE,
    MCN_BASE,
    MCNS,
    MERCHANT_BASE,
    MERCHANTS,
    SOURCE_WEIGHTS,
    brand_merchant,
    creator_kind,
    creator_mcn_of,
)

CREATORS = 200
_SURNAMES = "李王张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕苏卢蒋"
_GIVEN = (
    "朵朵",
    "小杨",
    "雪梨",
    "大狼狗",
    "疯狂小杨哥",
    "琦儿",
    "小小",
    "子墨",
    "一宁",
    "思思",
    "二哥",
    "晓晓",
    "安安",
    "大胃王",
    "甜甜",
    "妈妈",
    "老师",
    "阿姨",
    "哥哥",
    "姐姐",
)
_STYLES = ("{s}{g}", "{s}{g}的好物分享", "{g}爱美妆", "{s}{g}严选", "{g}来了", "{s}家{g}", "{g}探店日记")
_CELEBRITIES = (
    "林一然",
    "宋知夏",
    "沈星河",
    "许嘉言",
    "顾南乔",
    "陆景琛",
    "唐语桐",
    "温以凡",
    "江屿白",
    "叶清歌",
    "周慕白",
    "夏晚晴",
)
_BRANDS = (
    "花西子",
    "完美日记",
    "三只松鼠",
    "波司登",
    "安踏",
    "李宁",
    "良品铺子",
    "珀莱雅",
    "百雀羚",
    "自然堂",
    "飞鹤",
    "小米",
    "美的",
    "格力",
    "太平鸟",
    "森马",
    "蕉下",
    "认养一头牛",
    "元气森林",
    "周大福",
    "老铺黄金",
    "九阳",
    "苏泊尔",
    "全棉时代",
    "babycare",
    "戴森",
    "雅诗兰黛",
    "欧莱雅",
)
_CITIES = ("杭州", "广州", "上海", "成都", "武汉", "深圳", "北京", "南京", "义乌", "苏州", "长沙")
_SHOP = ("官方旗舰店", "旗舰店", "专卖店", "官方店", "品牌店")
_MCN_NAMES = (
    "无忧传媒",
    "遥望网络",
    "交个朋友",
    "美腕",
    "谦寻文化",
    "星期天传媒",
    "辛选集团",
    "蚂蚁传媒",
    "papitube",
    "新榜星球",
    "大禹网络",
    "如涵控股",
)
_REGIONS = ("华东", "华南", "华北", "华东", "西南", "华中", "华南", "华东", "华北", "西南", "华中", "华东")
_SIGNED = (
    date(2018, 3, 1),
    date(2019, 6, 18),
    date(2020, 1, 8),
    date(2021, 9, 1),
    date(2019, 11, 11),
    date(2022, 4, 20),
    date(2020, 8, 8),
    date(2023, 5, 5),
    date(2026, 3, 15),
    date(2026, 6, 1),
    date(2026, 8, 18),
    date(2026, 10, 1),
)
CATEGORY_EN = {
    "美妆个护": "Beauty",
    "服饰内衣": "Apparel",
    "食品饮料": "Food & drinks",
    "家居日用": "Home",
    "数码家电": "Electronics",
    "母婴宠物": "Baby & pets",
    "珠宝文玩": "Jewellery",
    "图书教育": "Books",
}


def _nickname(i: int) -> str:
    kind = creator_kind(i)
    if kind == "celebrity":
        return _CELEBRITIES[(i // 13) % len(_CELEBRITIES)]
    if kind == "brand":
        return _merchant_name(brand_merchant(i) - MERCHANT_BASE - 1) + "直播间"
    style = _STYLES[i % len(_STYLES)]
    return style.format(s=_SURNAMES[(i * 7) % len(_SURNAMES)], g=_GIVEN[(i * 3 + i // 20) % len(_GIVEN)])


def _merchant_name(m: int) -> str:
    city = "" if m < len(_BRANDS) else _CITIES[(m // len(_BRANDS)) % len(_CITIES)]
    return _BRANDS[m % len(_BRANDS)] + city + _SHOP[(m // len(_BRANDS) // len(_CITIES)) % len(_SHOP)]


def render() -> str:
    out = [
        "# The dimension registry: names for the ids events carry. Loaded into <db>.creators, mcns,",
        "# merchants and categories by `livecommerce dimensions load` and by every worker at start",
        "# (pipeline.serving.dimensions); loading is an upsert by id. Generated for the demo population",
        "# by `python -m pipeline.traffic.dimensions` (edit that, not this file, for the demo cast).",
        "#",
        "# [creator.<id>] nickname, avatar (URL), kind = creator | celebrity | brand (商家自播),",
        "#   mcn, merchant, category, source: the creator's defaults, used for events without their own.",
        "# [mcn.<id>] name, region (区域MCN赛道), signed (date signed with the platform; 新锐 = recent).",
        '# [merchant.<id>] name, brand.   [category."<text>"] name, name_en.',
        "",
    ]
    for k in range(MCNS):
        out += [
            f"[mcn.{MCN_BASE + 1 + k}]",
            f'name = "{_MCN_NAMES[k]}"',
            f'region = "{_REGIONS[k]}"',
            f"signed = {_SIGNED[k].isoformat()}",
            "",
        ]
    for name in CATEGORIES:
        out += [f'[category."{name}"]', f'name = "{name}"', f'name_en = "{CATEGORY_EN[name]}"', ""]
    for m in range(MERCHANTS):
        out += [
            f"[merchant.{MERCHANT_BASE + 1 + m}]",
            f'name = "{_merchant_name(m)}"',
            f'brand = "{_BRANDS[m % len(_BRANDS)]}"',
            "",
        ]
    sources = tuple(SOURCE_WEIGHTS)
    for i in range(CREATORS):
        cid = CREATOR_BASE + 1 + i
        out += [
            f"[creator.{cid}]",
            f'nickname = "{_nickname(i)}"',
            f'avatar = "https://avatar.example.com/creator/{cid}.jpg"',
            f'kind = "{creator_kind(i)}"',
        ]
        if creator_mcn_of(i):
            out.append(f"mcn = {creator_mcn_of(i)}")
        if creator_kind(i) == "brand":
            out += [f"merchant = {brand_merchant(i)}", 'source = "search"' if i % 2 else 'source = "mall"']
        else:
            out.append(f'source = "{sources[i % 2]}"')
        out.append(f'category = "{tuple(CATEGORIES)[i % len(CATEGORIES)]}"')
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    sys.stdout.write(render())
